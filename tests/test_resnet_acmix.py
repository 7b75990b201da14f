"""ResNet-ACmix: the sliding-window ACmix operator against the official
reference data and the unfold oracle, the backbone, the converter of the
official checkpoints, the configs, and a toy RetinaNet run."""
import copy
import math
from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F

import mmacmix  # noqa: F401  (registers the models, fixes torchvision)
from mmacmix.analysis.benchmark import tensor_memory_mib
from mmacmix.layers.sliding_acmix import (SlidingACmix, coordinate_grid,
                                          sliding_window_attention)
from mmacmix.models.backbones.resnet_acmix import ResNetACmix
from mmacmix.models.converters import (RESNET_ACMIX_LAYOUT,
                                       convert_acmix_module,
                                       extract_state_dict,
                                       load_official_checkpoint)

from acmix_oracle import (unfold_attention, unfold_window_attention,
                          use_unfold_attention)
from helpers import REPO_ROOT, printed_metrics, run_tool

CONFIGS = REPO_ROOT / 'configs'


def _official_module(reference_dir, stride):
    ref = torch.load(reference_dir / f'acmix_resnet_module_s{stride}.pth')
    args = ref['args']
    module = SlidingACmix(args['in_planes'], args['out_planes'],
                          args['kernel_att'], args['head'],
                          args['kernel_conv'], args['stride'])
    module.load_state_dict(convert_acmix_module(ref['state_dict']))
    return module.eval(), ref


# ---------------------------------------------------------------------------
# the operator
# ---------------------------------------------------------------------------
@pytest.mark.parametrize('stride', [1, 2])
def test_operator_equals_official_reference(reference_dir, stride):
    module, ref = _official_module(reference_dir, stride)
    assert ref['args']['stride'] == stride
    with torch.no_grad():
        out = module(ref['input'])
    assert out.shape == ref['output'].shape
    torch.testing.assert_close(out, ref['output'], atol=1e-4, rtol=0)


@pytest.mark.parametrize('stride', [1, 2])
def test_operator_with_the_unfold_oracle_equals_reference(
        reference_dir, stride):
    """The oracle is the official formulation (``pe_i`` term included)."""
    module, ref = _official_module(reference_dir, stride)
    use_unfold_attention(module)
    with torch.no_grad():
        out = module(ref['input'])
    torch.testing.assert_close(out, ref['output'], atol=1e-4, rtol=0)


@pytest.mark.parametrize('shape,stride,dilation', [
    ((2, 2, 8, 14, 14), 1, 1),
    ((2, 2, 8, 16, 16), 2, 1),
    ((1, 3, 4, 15, 9), 2, 1),   # odd sizes
    ((2, 1, 4, 4, 5), 1, 1),    # the smallest maps reflection allows
    ((1, 2, 4, 5, 4), 2, 1),
    ((1, 2, 6, 23, 30), 1, 1),  # several blocks, partial last ones
    ((1, 1, 40, 17, 12), 1, 1),  # the block size of larger heads
    ((1, 2, 4, 21, 19), 3, 1),
    # dilated: odd sizes (phases of unequal lengths), the smallest maps,
    # several blocks per phase, larger heads
    ((2, 2, 8, 15, 13), 1, 2),
    ((1, 1, 4, 7, 9), 1, 2),
    ((1, 2, 6, 31, 22), 1, 4),
    ((1, 1, 40, 29, 26), 1, 3),
])
def test_fast_attention_matches_unfold_oracle(shape, stride, dilation):
    """Values and gradients of all inputs, in float64; shape is
    (B, heads, d, H, W)."""
    torch.manual_seed(0)
    batch, heads, d, height, width = shape
    kwargs = dict(dtype=torch.float64, requires_grad=True)
    qkv = torch.randn(batch, 3 * heads, d, height, width, **kwargs)
    pe = torch.randn(1, d, height, width, **kwargs)
    rate = torch.tensor([0.7], **kwargs)  # ACmix's rate1, applied inside
    out = sliding_window_attention(qkv, pe, 7, stride, 0.3, rate, dilation)
    ref = rate * unfold_window_attention(qkv, pe, 7, stride, 0.3, dilation)
    assert out.shape == ref.shape == (batch, heads, d,
                                      math.ceil(height / stride),
                                      math.ceil(width / stride))
    torch.testing.assert_close(out, ref, atol=1e-12, rtol=1e-10)
    grad = torch.randn_like(ref)
    grads = torch.autograd.grad(out, (qkv, pe, rate), grad)
    ref_grads = torch.autograd.grad(ref, (qkv, pe, rate), grad)
    for got, expected in zip(grads, ref_grads):
        torch.testing.assert_close(got, expected, atol=1e-12, rtol=1e-10)


def _reflect(index, size):
    index = abs(index)
    return 2 * (size - 1) - index if index >= size else index


def test_dilated_unfold_oracle_is_the_dilated_neighbourhood():
    """The oracle with dilation, pixel by pixel: the query at (i, j)
    attends to the reflection-padded pixels (i + r * a, j + r * b),
    |a|, |b| <= kernel_size // 2, with the official logit
    ``q_i . (k_j + pe_i - pe_j)``."""
    torch.manual_seed(0)
    d, height, width, kernel_size, dilation = 3, 7, 8, 5, 3
    q, k, v = torch.randn(3, 2, d, height, width, dtype=torch.float64)
    pe = torch.randn(1, d, height, width, dtype=torch.float64)
    out = unfold_attention(q, k, v, pe, kernel_size, 1, 0.4, dilation)
    half = kernel_size // 2
    for i in range(height):
        for j in range(width):
            window = [(_reflect(i + dilation * a, height),
                       _reflect(j + dilation * b, width))
                      for a in range(-half, half + 1)
                      for b in range(-half, half + 1)]
            logits = torch.stack([
                0.4 * (q[..., i, j] * (k[..., y, x] + pe[0, :, i, j] -
                                       pe[0, :, y, x])).sum(-1)
                for y, x in window], -1)
            values = torch.stack([v[..., y, x] for y, x in window], -1)
            expected = (logits.softmax(-1)[:, None] * values).sum(-1)
            torch.testing.assert_close(out[..., i, j], expected, atol=1e-12,
                                       rtol=1e-12)


def test_dilated_attention_refuses_what_it_cannot_do():
    qkv = torch.randn(1, 3, 2, 9, 9)
    pe = torch.randn(1, 2, 9, 9)
    with pytest.raises(NotImplementedError,
                       match='dilation 2 with stride 2; dilation above 1 '
                       'needs stride 1'):
        sliding_window_attention(qkv, pe, 7, 2, 1., None, 2)
    # a 7x7 window at dilation 3 spans 19 pixels: 9 < 10 refused
    with pytest.raises(ValueError, match='needs inputs larger than 9 on '
                       'both sides .* got 9x9'):
        sliding_window_attention(qkv, pe, 7, 1, 1., None, 3)
    with pytest.raises(ValueError, match='dilation must be a positive int'):
        SlidingACmix(8, 8, dilation=0)


def test_fast_attention_chunks_the_batch(monkeypatch):
    """Chunks of the batch give the same values and gradients."""
    from mmacmix.layers import sliding_acmix
    torch.manual_seed(0)
    qkv = torch.randn(5, 6, 3, 9, 8, dtype=torch.float64, requires_grad=True)
    pe = torch.randn(1, 3, 9, 8, dtype=torch.float64, requires_grad=True)
    results = []
    for chunk_logits in (2**21, 1):  # the whole batch, one sample a chunk
        monkeypatch.setattr(sliding_acmix, '_CHUNK_LOGITS', chunk_logits)
        out = sliding_window_attention(qkv, pe, 7, 2, 0.5)
        results.append((out, ) + torch.autograd.grad(out.sin().sum(),
                                                     (qkv, pe)))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b)


def test_fast_attention_gradcheck():
    torch.manual_seed(0)
    kwargs = dict(dtype=torch.float64, requires_grad=True)
    qkv = torch.randn(1, 6, 2, 6, 5, **kwargs)
    pe = torch.randn(1, 2, 6, 5, **kwargs)
    rate = torch.tensor([-1.3], **kwargs)
    for stride in (1, 2):
        assert torch.autograd.gradcheck(
            lambda *t: sliding_window_attention(*t, 7, stride, 0.5),
            (qkv, pe))
        assert torch.autograd.gradcheck(
            lambda *t: sliding_window_attention(*t[:2], 7, stride, 0.5,
                                                t[2]), (qkv, pe, rate))


def test_plain_sum_backward_matches_oracle():
    """``out.sum().backward()`` hands the attention an expanded gradient
    (one element seen at every position), which it must not write to."""
    torch.manual_seed(0)
    ours = SlidingACmix(8, 16).double()
    oracle = use_unfold_attention(copy.deepcopy(ours))
    # sizes that are multiples of the query blocks: no padded copy
    x = torch.randn(2, 8, 8, 12, dtype=torch.float64, requires_grad=True)
    grads = [torch.autograd.grad(m(x).sum(), [x, *m.parameters()])
             for m in (ours, oracle)]
    for got, expected in zip(*grads):
        torch.testing.assert_close(got, expected, atol=1e-10, rtol=1e-9)


def test_operator_matches_oracle_in_training_with_gradients():
    """The whole module, float32: outputs and every parameter gradient."""
    torch.manual_seed(0)
    ours = SlidingACmix(16, 32, stride=2)
    oracle = use_unfold_attention(copy.deepcopy(ours))
    x = torch.randn(2, 16, 13, 11)
    out, ref = ours(x), oracle(x)
    assert out.shape == (2, 32, 7, 6)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    out.square().sum().backward()
    ref.square().sum().backward()
    for (name, p), q in zip(ours.named_parameters(), oracle.parameters()):
        assert p.grad is not None, name
        torch.testing.assert_close(p.grad, q.grad, atol=1e-4, rtol=1e-4,
                                   msg=name)


@pytest.mark.parametrize('stride', [1, 2])
def test_recompute_keeps_less_and_gives_the_same_gradients(stride):
    """With ``recompute`` the forward pass leaves the projections to the
    backward pass to recompute: the graph holds at least their size less,
    and the outputs and every gradient are the same (float64)."""
    torch.manual_seed(0)
    module = SlidingACmix(16, 32, stride=stride).double().train()
    x = torch.randn(2, 16, 26, 22, dtype=torch.float64)
    grad = torch.randn(2, 32, 26 // stride, 22 // stride,
                       dtype=torch.float64)
    results, kept = [], []
    for recompute in (False, True):
        module.recompute = recompute
        module.zero_grad()
        inputs = x.clone().requires_grad_()
        outputs = []
        kept.append(tensor_memory_mib(
            lambda: outputs.append(module(inputs)))[1])
        outputs[0].backward(grad)
        results.append([outputs[0].detach(), inputs.grad] +
                       [p.grad for p in module.parameters()])
    projections_mib = x.shape[0] * 3 * 32 * 26 * 22 * 8 / 2**20
    assert kept[0] - kept[1] >= projections_mib
    for plain, recomputed in zip(*results):
        torch.testing.assert_close(recomputed, plain, rtol=1e-12, atol=1e-12)


def test_odd_sizes_with_stride_2():
    """Odd inputs give ceil(H / 2) x ceil(W / 2) outputs: the queries are
    the even pixels, the grid of the stride-2 convolution path."""
    torch.manual_seed(0)
    module = SlidingACmix(8, 8, stride=2).eval()
    x = torch.randn(1, 8, 9, 15)
    with torch.no_grad():
        out = module(x)
        assert out.shape == (1, 8, 5, 8)
        # attention alone: the query of output (i, j) is input (2i, 2j),
        # whose window is the same as at stride 1
        module.rates.rate2.data.zero_()
        dense = SlidingACmix(8, 8, stride=1).eval()
        dense.load_state_dict(module.state_dict())
        torch.testing.assert_close(module(x), dense(x)[:, :, ::2, ::2])


def test_rates_reduce_to_either_path(reference_dir):
    """rates (1, 0): the attention alone; (0, 1): the official convolution
    path, computed here in the official layout (fc over the concatenated
    q, k, v heads, d-major maps, grouped convolution)."""
    module, ref = _official_module(reference_dir, 2)
    x = ref['input']
    heads, head_dims = module.num_heads, module.head_dims
    sd = ref['state_dict']
    with torch.no_grad():
        module.rates.rate1.fill_(1)
        module.rates.rate2.fill_(0)
        qkv = [F.conv2d(x, sd[f'conv{i}.weight'], sd[f'conv{i}.bias'])
               for i in (1, 2, 3)]
        b, c, h, w = qkv[0].shape
        pe = F.conv2d(coordinate_grid(h, w, x.device, x.dtype),
                      sd['conv_p.weight'], sd['conv_p.bias'])
        attention = unfold_attention(
            *(t.reshape(b * heads, head_dims, h, w) for t in qkv), pe, 7, 2,
            head_dims**-0.5).reshape(b, c, 8, 8)
        torch.testing.assert_close(module(x), attention, atol=1e-5, rtol=0)

        module.rates.rate1.fill_(0)
        module.rates.rate2.fill_(1)
        f_all = F.conv2d(
            torch.cat([t.view(b, heads, head_dims, h * w) for t in qkv], 1),
            sd['fc.weight'])  # (b, 9, head_dims, h * w)
        f_conv = f_all.permute(0, 2, 1, 3).reshape(b, -1, h, w)
        conv = F.conv2d(f_conv, sd['dep_conv.weight'], stride=2, padding=1,
                        groups=head_dims)
        torch.testing.assert_close(module(x), conv, atol=1e-5, rtol=0)


def test_operator_bad_arguments_and_inputs():
    with pytest.raises(ValueError, match='divisible'):
        SlidingACmix(8, 10, num_heads=4)
    with pytest.raises(ValueError, match='odd'):
        SlidingACmix(8, 8, kernel_att=6)
    with pytest.raises(ValueError, match='stride'):
        SlidingACmix(8, 8, stride=0)
    module = SlidingACmix(8, 8)
    with pytest.raises(ValueError, match='larger than'):
        module(torch.randn(1, 8, 3, 10))
    with pytest.raises(ValueError, match=r'\(B, C, H, W\)'):
        module(torch.randn(8, 10, 10))
    module(torch.randn(1, 8, 4, 4))  # the smallest size that works


def test_shift_kernels_survive_init_weights():
    model = ResNetACmix(
        26,
        base_channels=8,
        stem_channels=8,
        init_cfg=dict(type='Kaiming', layer='Conv2d'))
    model.init_weights()
    weight = model.layer1[0].conv2.conv.dep_conv.weight
    expected = torch.zeros_like(weight)
    taps = torch.arange(9)
    expected[:, taps, taps // 3, taps % 3] = 1
    torch.testing.assert_close(weight, expected)


# ---------------------------------------------------------------------------
# the backbone
# ---------------------------------------------------------------------------
@pytest.mark.parametrize('depth,expected', [(26, 10_487_816),
                                            (38, 14_410_896),
                                            (50, 18_333_976)])
def test_parameter_counts_equal_official(depth, expected):
    model = ResNetACmix(depth)
    fc = 2048 * 1000 + 1000  # the 1000-class classifier
    assert sum(p.numel() for p in model.parameters()) + fc == expected


def small_backbone(**kwargs):
    return ResNetACmix(26, stem_channels=8, base_channels=4, **kwargs)


def test_backbone_outputs_any_size():
    model = small_backbone(out_indices=(0, 1, 2, 3)).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 99, 130))
    # ceil at the stem, the max-pool and every stride-2 stage
    assert [o.shape for o in outs] == [
        (1, 16, 25, 33), (1, 32, 13, 17), (1, 64, 7, 9), (1, 128, 4, 5)]
    # 2x2 at the last stage; depth 26 needs 49 pixels
    with pytest.raises(ValueError, match='at least 49x49 pixels, got 32x32'):
        model(torch.randn(1, 3, 32, 32))


D8 = dict(strides=(1, 2, 1, 1), dilations=(1, 1, 2, 4),
          contract_dilation=True)


@pytest.mark.parametrize('shape', [(97, 97), (101, 117), (128, 112)])
def test_dilated_backbone_has_output_stride_8_on_resnetv1c_grid(shape):
    """With mmseg's ``-d8`` arguments: the maps of mmseg's ResNetV1c with
    the same arguments, odd sizes included (ceil at every stride-2
    layer); ResNet-ACmix-50's channels are ResNet-50's."""
    from mmseg.models.backbones import ResNetV1c
    backbone = ResNetACmix(50, out_indices=(0, 1, 2, 3), **D8)
    reference = ResNetV1c(depth=50, out_indices=(0, 1, 2, 3), **D8)
    assert backbone.min_input_size == 97
    assert backbone.num_features == [256, 512, 1024, 2048]
    # the operators' dilations: mmseg's, the first block's contracted
    expected = [[1] * 3, [1] * 4, [1] + [2] * 5, [2] + [4] * 2]
    assert [[block.conv2.dilation for block in getattr(backbone, name)]
            for name in backbone.res_layers] == expected
    assert [[block.conv2.dilation[0] for block in getattr(reference, name)]
            for name in reference.res_layers] == expected
    backbone.eval()
    reference.eval()
    x = torch.randn(1, 3, *shape)
    with torch.no_grad():
        ours = [out.shape for out in backbone(x)]
        theirs = [out.shape for out in reference(x)]
    assert ours == theirs
    assert ours[-1][-2:] == tuple(math.ceil(side / 8) for side in shape)


def test_dilated_backbone_matches_the_unfold_oracle_in_training():
    """The dilated backbone against itself with the oracle's attention, in
    float64: outputs and gradients."""
    torch.manual_seed(0)
    model = ResNetACmix(26, stem_channels=16, base_channels=8,
                        out_indices=(0, 1, 2, 3), **D8).double()
    oracle = use_unfold_attention(copy.deepcopy(model))
    x = torch.randn(2, 3, 101, 99, dtype=torch.float64)
    outs, refs = model(x), oracle(x)
    for out, ref in zip(outs, refs):
        torch.testing.assert_close(out, ref, atol=1e-10, rtol=1e-10)
    grads = torch.autograd.grad(sum(o.sin().sum() for o in outs),
                                list(model.parameters()))
    ref_grads = torch.autograd.grad(sum(o.sin().sum() for o in refs),
                                    list(oracle.parameters()))
    for got, want in zip(grads, ref_grads):
        torch.testing.assert_close(got, want, atol=1e-9, rtol=1e-7)


def test_dilated_backbone_bad_arguments():
    with pytest.raises(ValueError, match=r'dilations \(1, 2\) must have 4 '
                       'entries'):
        ResNetACmix(50, dilations=(1, 2))
    # mmseg's ResNet allows it; the dilated attention needs stride 1
    with pytest.raises(NotImplementedError, match='dilation 2 with stride '
                       '2'):
        ResNetACmix(26, strides=(1, 2, 2, 1), dilations=(1, 1, 2, 1))
    backbone = ResNetACmix(26, out_indices=(3, ), **D8)
    assert backbone.min_input_size == 49  # one block of dilation 2 last
    with pytest.raises(ValueError, match='at least 49'):
        backbone(torch.randn(1, 3, 48, 64))


def test_backbone_bad_arguments():
    with pytest.raises(ValueError, match='depth'):
        ResNetACmix(18)
    with pytest.raises(ValueError, match='out_indices'):
        ResNetACmix(26, out_indices=(4, ))
    with pytest.raises(ValueError, match='strides'):
        ResNetACmix(26, strides=(1, 2, 2))
    with pytest.raises(ValueError, match='recompute'):
        ResNetACmix(26, recompute=(True, False))


def test_recompute_per_stage_and_not_under_with_cp():
    """By default every stage but the last recomputes its projections;
    under with_cp (which recomputes whole blocks) none does."""

    def flags(model):
        return [[block.conv2.recompute for block in getattr(model, name)]
                for name in model.res_layers]

    assert flags(ResNetACmix(38)) == [[True] * 2, [True] * 3, [True] * 5,
                                      [False] * 2]
    assert flags(ResNetACmix(26, recompute=(False, True, False, True))) == [
        [False], [True, True], [False] * 4, [True]]
    assert not any(sum(flags(ResNetACmix(26, with_cp=True)), []))


def test_frozen_stages_and_norm_eval():
    model = small_backbone(frozen_stages=1, norm_eval=True).train()
    frozen = [model.conv1, model.bn1, model.layer1]
    assert all(not p.requires_grad for m in frozen for p in m.parameters())
    assert all(p.requires_grad for p in model.layer2.parameters())
    assert not model.layer1.training
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and not any(m.training for m in bns)
    assert model.layer2[0].conv2.training  # only norms are in eval mode
    model = small_backbone(norm_eval=False).train()
    assert all(m.training for m in model.modules())


def test_with_cp_gives_the_same_outputs_and_gradients():
    torch.manual_seed(0)
    plain = small_backbone(out_indices=(1, 3)).train()
    ckpt = small_backbone(out_indices=(1, 3), with_cp=True).train()
    ckpt.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 112, 112)
    grads = []
    for model in (plain, ckpt):
        outs = model(x)
        sum(o.square().mean() for o in outs).backward()
        grads.append([p.grad for p in model.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_init_cfg_pretrained_loads_converted_weights(tmp_path):
    source = small_backbone()
    state = {'backbone.' + k: v for k, v in source.state_dict().items()}
    torch.save(dict(state_dict=state), tmp_path / 'ckpt.pth')
    model = small_backbone(init_cfg=dict(
        type='Pretrained', checkpoint=str(tmp_path / 'ckpt.pth'),
        prefix='backbone.'))
    model.init_weights()
    for key, value in source.state_dict().items():
        torch.testing.assert_close(model.state_dict()[key], value)


# ---------------------------------------------------------------------------
# the converter
# ---------------------------------------------------------------------------
def _official_key(ours: str) -> str:
    """Our classifier key -> the official ResNet-ACmix key (for building a
    synthetic official checkpoint independently of the converter)."""
    for our_name, name in (('conv.fc.', 'fc.'),
                           ('conv.dep_conv.', 'dep_conv.'), ('rates.', ''),
                           ('pos_enc.', 'conv_p.'),
                           ('head.fc.', 'fc.'), ('backbone.', '')):
        ours = ours.replace(our_name, name)
    return ours


def _synthetic_official_checkpoint(reference_dir):
    """An official-layout ResNet-ACmix-26 training checkpoint, saved from
    DDP (``module.`` prefixes) with optimizer and scheduler states, whose
    first ACmix operator is the reference module."""
    torch.manual_seed(0)
    model = ResNetACmix(26)
    ref = torch.load(reference_dir / 'acmix_resnet_module_s1.pth')
    official = OrderedDict()
    for key, value in model.state_dict().items():
        value = torch.randn_like(value.float()).to(value.dtype)
        if '.qkv.' in key:
            for i, part in enumerate(value.chunk(3), 1):
                official[key.replace('qkv.', f'conv{i}.')] = part
        elif key.endswith('conv.fc.weight'):
            official[key] = value[..., None, None]  # Conv2d(12, 9, 1)
        else:
            official[key] = value
    official = OrderedDict((_official_key(k), v) for k, v in official.items())
    for key, value in ref['state_dict'].items():
        assert official['layer1.0.conv2.' + key].shape == value.shape, key
        official['layer1.0.conv2.' + key] = value
    official['fc.weight'] = torch.randn(1000, 2048)
    official['fc.bias'] = torch.randn(1000)
    checkpoint = dict(
        state_dict=OrderedDict(('module.' + k, v)
                               for k, v in official.items()),
        optimizer=dict(state={}, param_groups=[dict(lr=0.1, momentum=0.9)]),
        scheduler=dict(last_epoch=99, base_lrs=[0.1]),
        epoch=100)
    return checkpoint, official, ref


def test_converter_official_training_checkpoint(reference_dir, tmp_path):
    checkpoint, official, ref = _synthetic_official_checkpoint(reference_dir)
    torch.save(checkpoint, tmp_path / 'official.pth')
    layout = RESNET_ACMIX_LAYOUT

    state = extract_state_dict(load_official_checkpoint(tmp_path /
                                                        'official.pth'))
    assert list(state) == list(official)  # no module., nothing else
    assert layout.check(state) == ([], [])
    converted = layout.convert(state)

    from mmengine.registry import DefaultScope
    from mmpretrain.models import ImageClassifier

    # its parts come from mmpretrain's registries, whatever scope an
    # earlier test left as the default
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        classifier = ImageClassifier(
            backbone=dict(type='ResNetACmix', depth=26),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(type='LinearClsHead', num_classes=1000,
                      in_channels=2048))
    classifier.load_state_dict(converted, strict=True)
    backbone = classifier.backbone
    torch.testing.assert_close(backbone.conv1.weight, official['conv1.weight'])
    torch.testing.assert_close(
        backbone.layer3[1].conv2.qkv.bias,
        torch.cat([official[f'layer3.1.conv2.conv{i}.bias']
                   for i in (1, 2, 3)]))
    torch.testing.assert_close(classifier.head.fc.weight,
                               official['fc.weight'])
    # the reference operator, converted inside the full checkpoint
    with torch.no_grad():
        out = backbone.layer1[0].conv2.eval()(ref['input'])
    torch.testing.assert_close(out, ref['output'], atol=1e-4, rtol=0)


def test_converter_reports_missing_and_unexpected_keys(reference_dir):
    _, official, _ = _synthetic_official_checkpoint(reference_dir)
    layout = RESNET_ACMIX_LAYOUT
    broken = OrderedDict(official)
    del broken['layer2.1.conv2.conv_p.weight']
    broken['layer1.0.conv2.dep_conv.bias'] = torch.zeros(64)
    missing, unexpected = layout.check(broken)
    assert missing == ['layer2.1.conv2.conv_p.weight']
    assert unexpected == ['layer1.0.conv2.dep_conv.bias']


def test_convert_acmix_module_rejects_unknown_keys(reference_dir):
    ref = torch.load(reference_dir / 'acmix_resnet_module_s1.pth')
    state = dict(ref['state_dict'], extra=torch.zeros(1))
    with pytest.raises(KeyError, match='extra'):
        convert_acmix_module(state)


# ---------------------------------------------------------------------------
# configs and a toy run
# ---------------------------------------------------------------------------
def test_classification_configs_build():
    from mmengine.config import Config
    from mmpretrain.registry import MODELS
    for depth, params in ((26, 10_487_816), (38, 14_410_896),
                          (50, 18_333_976)):
        cfg = Config.fromfile(CONFIGS / f'resnet_acmix_{depth}_in1k.py')
        assert cfg.custom_imports.imports == ['mmacmix']
        assert cfg.optim_wrapper.optimizer.type == 'SGD'
        assert cfg.optim_wrapper.optimizer.lr == 0.1
        assert cfg.train_cfg.max_epochs == 100
        assert cfg.train_dataloader.batch_size * 8 == 256
        assert cfg.param_scheduler.type == 'CosineAnnealingLR'
        assert cfg.model.head.loss.label_smooth_val == 0.1
        model = MODELS.build(cfg.model)
        assert sum(p.numel() for p in model.parameters()) == params


def test_retinanet_config_builds_and_runs():
    from mmdet.registry import MODELS
    from mmengine.config import Config
    cfg = Config.fromfile(CONFIGS / 'retinanet_resnet_acmix_50_1x_coco.py')
    assert cfg.custom_imports == dict(imports=['mmacmix'],
                                      allow_failed_imports=False)
    assert cfg.optim_wrapper.optimizer.type == 'SGD'
    assert cfg.optim_wrapper.optimizer.lr == 0.01
    assert cfg.train_cfg.max_epochs == 12
    warmup = cfg.param_scheduler[0]
    assert (warmup.type, warmup.by_epoch, warmup.end) == ('LinearLR', False,
                                                          500)
    assert cfg.model.backbone.type == 'ResNetACmix'
    assert cfg.model.backbone.depth == 50
    assert 'style' not in cfg.model.backbone  # the stock ResNet's, deleted
    cfg.model.backbone.init_cfg = None
    model = MODELS.build(cfg.model).eval()
    with torch.no_grad():
        feats = model.extract_feat(torch.randn(1, 3, 128, 160))
    assert [f.shape[1] for f in feats] == [256] * 5


def test_toy_retinanet_trains_and_evaluates(toy_workspace):
    config = CONFIGS / 'toy/retinanet_resnet_acmix_toy_coco.py'
    work_dir = toy_workspace / 'work_dirs/retinanet_resnet_acmix'
    # one epoch of one iteration (4 images), then validation
    run_tool(['train.py', config, '--work-dir', work_dir, '--cfg-options',
              'train_dataloader.dataset.indices=4'], cwd=toy_workspace)
    ckpt = work_dir / 'epoch_1.pth'
    assert ckpt.is_file()
    proc = run_tool(['test.py', config, ckpt, '--work-dir',
                     toy_workspace / 'work_dirs/retinanet_resnet_acmix_test'],
                    cwd=toy_workspace)
    metrics = printed_metrics(proc)
    assert 0.0 <= metrics['coco/bbox_mAP'] <= 1.0
