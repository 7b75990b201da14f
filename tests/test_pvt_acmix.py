"""The PVTACmix backbone and its operator: PVT v1 sizes, the dense-prediction
interface, equality with mmdet's PVT when attention-only, the paper's
budget, the whai362 checkpoint layout, the configs and a toy run."""
import re

import pytest
import torch
import torch.nn.functional as F
from mmengine.model import BaseModule

import mmacmix  # noqa: F401
from mmacmix.analysis.complexity import complexity
from mmacmix.layers.sr_acmix import SpatialReductionACmix
from mmacmix.models.backbones.pvt_acmix import PVTACmix
from mmacmix.models.converters import LAYOUTS, convert_state_dict

from helpers import REPO_ROOT, printed_metrics, run_tool

PVT_V1 = next(layout for layout in LAYOUTS if layout.name == 'pvt_v1_official')

# PVT v1's per-stage settings with fewer channels and blocks
MINI = dict(
    embed_dims=[16, 32, 80, 128],
    depths=[1, 1, 2, 1],
    num_heads=[1, 2, 5, 8],
    sr_ratios=[8, 4, 2, 1],
    mlp_ratios=[2, 2, 2, 2])
TOLERANCE = dict(rtol=1e-4, atol=1e-4)


def shift_kernels(model):
    return [
        m.dep_conv.weight.detach().clone() for m in model.modules()
        if hasattr(m, 'dep_conv')
    ]


def perturbed(model, scale=0.1):
    """``model`` with every parameter moved off its initialisation."""
    with torch.no_grad():
        for param in model.parameters():
            param.add_(scale * torch.randn_like(param))
    return model


# ---------------------------------------------------------------------------
# The operator
# ---------------------------------------------------------------------------
@torch.no_grad()
def test_conv_path_sees_the_key_and_value_of_each_pixels_patch():
    """Rates (0, 1), shift kernels, and an fc that copies the value of head
    0 to the centre tap: every output channel ``d * heads + j`` is channel
    ``d`` of the value of head 0 at the reduction patch holding the pixel;
    the rows and columns the reduction drops take the last patch's."""
    torch.manual_seed(0)
    heads, sr = 2, 4
    op = perturbed(SpatialReductionACmix(16, heads, sr)).eval()
    op.rates.rate1.fill_(0)
    op.rates.rate2.fill_(1)
    op.conv.init_weights()  # shift kernels
    op.conv.fc.weight.zero_()
    op.conv.fc.bias.zero_()
    op.conv.fc.weight[4, 2 * heads] = 1  # centre tap <- value of head 0

    x = torch.randn(2, 19, 22, 16)  # 19 = 4 * 4 + 3, 22 = 5 * 4 + 2
    reduced = op.sr(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
    value = op.kv(op.norm(reduced))[..., 16:16 + 8]  # (2, 4, 5, head_dims)
    rows = torch.arange(19).div(sr, rounding_mode='floor').clamp(max=3)
    cols = torch.arange(22).div(sr, rounding_mode='floor').clamp(max=4)
    expected = value[:, rows][:, :, cols].repeat_interleave(heads, -1)
    torch.testing.assert_close(op(x), expected)


@torch.no_grad()
def test_conv_path_shifts_the_query():
    """fc copying the query of head 1 to tap 0 (kernel 1 at (0, 0)): the
    output is that query shifted by one pixel down and right, zero at the
    top and left border."""
    torch.manual_seed(0)
    op = perturbed(SpatialReductionACmix(16, 2, sr_ratio=1)).eval()
    op.rates.rate1.fill_(0)
    op.rates.rate2.fill_(1)
    op.conv.init_weights()
    op.conv.fc.weight.zero_()
    op.conv.fc.bias.zero_()
    op.conv.fc.weight[0, 1] = 1
    x = torch.randn(1, 7, 9, 16)
    query = op.q(x)[..., 8:].repeat_interleave(2, -1)
    expected = F.pad(query, (0, 0, 1, 0, 1, 0))[:, :7, :9]
    torch.testing.assert_close(op(x), expected)


def test_operator_rejects_bad_settings():
    with pytest.raises(ValueError, match='divisible'):
        SpatialReductionACmix(30, 4)
    with pytest.raises(ValueError, match='sr_ratio'):
        SpatialReductionACmix(32, 4, sr_ratio=0)


# ---------------------------------------------------------------------------
# The backbone
# ---------------------------------------------------------------------------
def test_arch_zoo():
    for name, depths in [('tiny', [2, 2, 2, 2]), ('small', [3, 4, 6, 3]),
                         ('medium', [3, 4, 18, 3]),
                         ('large', [3, 8, 27, 3])]:
        assert PVTACmix.arch_zoo[name] == PVTACmix.arch_zoo[name[0]]
        assert PVTACmix.arch_zoo[name]['depths'] == depths
    tiny = PVTACmix('tiny')
    assert [len(s.blocks) for s in tiny.stages] == [2, 2, 2, 2]
    assert tiny.num_features == [64, 128, 320, 512]
    assert [s.blocks[0].attn.num_heads for s in tiny.stages] == [1, 2, 5, 8]
    assert [s.blocks[0].attn.sr_ratio for s in tiny.stages] == [8, 4, 2, 1]
    assert [s.blocks[0].mlp.fc1.out_features
            for s in tiny.stages] == [512, 1024, 1280, 2048]
    assert [tuple(s.pos_embed.shape[2:])
            for s in tiny.stages] == [(56, 56), (28, 28), (14, 14), (7, 7)]


def test_bad_arch():
    with pytest.raises(ValueError,
                       match=r"arch must be one of \['l', 'large', 'm', .*"
                       r"got 'huge'"):
        PVTACmix('huge')
    with pytest.raises(ValueError, match='keys'):
        PVTACmix(dict(embed_dims=[32], depths=[2]))
    with pytest.raises(ValueError, match='differ in length'):
        PVTACmix(dict(MINI, depths=[1, 1, 1]))
    with pytest.raises(ValueError, match='out_indices'):
        PVTACmix(MINI, out_indices=(4, ))
    with pytest.raises(ValueError, match='patch_sizes'):
        PVTACmix(MINI, patch_sizes=(4, 2, 2))


@pytest.mark.parametrize('size', [(224, 224), (97, 131), (32, 33),
                                  (230, 301)])
@torch.no_grad()
def test_any_input_size_gives_floor_strides(size):
    backbone = PVTACmix(MINI).eval()
    outs = backbone(torch.randn(1, 3, *size))
    height, width = size
    for i, out in enumerate(outs):
        stride = 4 * 2**i
        assert out.shape == (1, MINI['embed_dims'][i], height // stride,
                             width // stride)
        assert out.is_contiguous()


def test_input_smaller_than_the_reductions_is_refused():
    with pytest.raises(ValueError, match='at least 32x32'):
        PVTACmix(MINI)(torch.randn(1, 3, 31, 64))


def test_out_indices_and_norms():
    backbone = PVTACmix(MINI, out_indices=(1, -1), out_norms=True)
    assert backbone.out_indices == [1, 3]
    assert hasattr(backbone, 'norm1') and hasattr(backbone, 'norm3')
    assert not hasattr(backbone, 'norm0')
    outs = backbone(torch.randn(2, 3, 64, 64))
    assert [o.shape[1] for o in outs] == [32, 128]
    # the norms normalise every pixel's channels
    torch.testing.assert_close(
        outs[1].mean(1), torch.zeros(2, 2, 2), atol=1e-5, rtol=0)
    assert not hasattr(PVTACmix(MINI), 'norm3')  # PVT v1 dense: no norms


def test_frozen_stages():
    backbone = PVTACmix(MINI, frozen_stages=2, out_norms=True).train()
    for module in (backbone.stages[0], backbone.stages[1], backbone.norm0,
                   backbone.norm1):
        assert not module.training
        assert not any(p.requires_grad for p in module.parameters())
    for module in (backbone.stages[2], backbone.norm2):
        assert module.training
        assert all(p.requires_grad for p in module.parameters())
    embeddings_only = PVTACmix(MINI, frozen_stages=0).train()
    assert not embeddings_only.stages[0].pos_embed.requires_grad
    assert not embeddings_only.stages[0].patch_embed.training
    assert embeddings_only.stages[0].blocks.training


def test_gradient_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    plain = PVTACmix(MINI, drop_path_rate=0.)
    checkpointed = PVTACmix(MINI, drop_path_rate=0., with_cp=True)
    checkpointed.load_state_dict(plain.state_dict())
    x = torch.randn(1, 3, 64, 72)
    for model in (plain, checkpointed):
        sum(out.sum() for out in model(x)).backward()
    for (name, a), b in zip(plain.named_parameters(),
                            checkpointed.parameters()):
        torch.testing.assert_close(a.grad, b.grad, msg=name)


def test_drop_path_schedule():
    backbone = PVTACmix(MINI, drop_path_rate=0.3)
    rates = [b.drop_path_rate for s in backbone.stages for b in s.blocks]
    torch.testing.assert_close(
        torch.tensor(rates), torch.linspace(0, 0.3, 5))


def test_bf16_autocast_on_cpu():
    backbone = PVTACmix(MINI).train()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        outs = backbone(torch.randn(1, 3, 97, 131))
    sum(out.float().sum() for out in outs).backward()
    assert all(torch.isfinite(out).all() for out in outs)


def test_init_cfg_initialisers_keep_the_shift_kernels():
    """mmengine initialisers at the backbone or a parent, and a plain
    init_weights(), all leave the shift kernels."""

    class Detector(BaseModule):

        def __init__(self):
            super().__init__(
                init_cfg=dict(type='Normal', layer='Conv2d', std=1.))
            self.backbone = PVTACmix(
                MINI, init_cfg=dict(type='Kaiming', layer='Conv2d'))

    model = Detector()
    kernels = shift_kernels(model)
    assert all(k.sum() == k.shape[0] * k.shape[1] for k in kernels)
    projection = model.backbone.stages[0].patch_embed.projection.weight
    projection = projection.detach().clone()
    model.init_weights()
    assert not torch.equal(
        model.backbone.stages[0].patch_embed.projection.weight, projection)
    for before, after in zip(kernels, shift_kernels(model), strict=True):
        assert torch.equal(before, after)


# ---------------------------------------------------------------------------
# Attention-only: mmdet's PyramidVisionTransformer
# ---------------------------------------------------------------------------
def mmdet_to_pvt_acmix(state):
    """mmdet PyramidVisionTransformer weights -> PVTACmix names, with rates
    (1, 0): ``in_proj`` splits into ``q`` and ``kv``, the 1x1-conv FFN
    becomes the Linear MLP, the position embeddings become grids."""
    converted = {}
    for key, value in state.items():
        stage, part, rest = re.fullmatch(r'layers\.(\d)\.(\d)\.(.*)',
                                         key).groups()
        if part == '0':
            converted[f'stages.{stage}.patch_embed.{rest}'] = value
            continue
        index, rest = rest.split('.', 1)
        if index == '0':  # AbsolutePositionEmbedding
            side = round(value.shape[1]**0.5)
            converted[f'stages.{stage}.pos_embed'] = value.transpose(
                1, 2).unflatten(2, (side, side))
            continue
        prefix = f'stages.{stage}.blocks.{int(index) - 1}.'
        if rest.startswith('attn.attn.in_proj_'):
            kind = rest.rsplit('_', 1)[1]
            q, kv = value.tensor_split([value.shape[0] // 3])
            converted[prefix + f'attn.q.{kind}'] = q
            converted[prefix + f'attn.kv.{kind}'] = kv
            converted[prefix + 'attn.rates.rate1'] = torch.ones(1)
            converted[prefix + 'attn.rates.rate2'] = torch.zeros(1)
            continue
        rest = (
            rest.replace('attn.attn.out_proj.', 'attn.proj.').replace(
                'ffn.layers.0.', 'mlp.fc1.').replace('ffn.layers.3.',
                                                     'mlp.fc2.'))
        if rest.startswith('mlp.') and rest.endswith('weight'):
            value = value.flatten(1)
        converted[prefix + rest] = value
    return converted


def mmdet_pvt(**kwargs):
    from mmdet.models.backbones import PyramidVisionTransformer
    pvt = PyramidVisionTransformer(
        embed_dims=16,
        num_layers=MINI['depths'],
        mlp_ratios=MINI['mlp_ratios'],
        drop_path_rate=0.,
        **kwargs)
    return perturbed(pvt).eval()


@torch.no_grad()
def test_attention_only_equals_mmdet_pvt_at_odd_sizes():
    torch.manual_seed(0)
    pvt = mmdet_pvt()
    ours = PVTACmix(MINI, drop_path_rate=0.).eval()
    missing, unexpected = ours.load_state_dict(
        mmdet_to_pvt_acmix(pvt.state_dict()), strict=False)
    assert not unexpected
    assert missing and all('.attn.conv.' in key for key in missing)

    # the reductions drop remainders; the position embeddings are resized
    for size in [(230, 301), (224, 224)]:
        x = torch.randn(1, 3, *size)
        for ours_out, pvt_out in zip(ours(x), pvt(x), strict=True):
            torch.testing.assert_close(ours_out, pvt_out, **TOLERANCE)


# ---------------------------------------------------------------------------
# The paper's budget, with mmengine's counter
# ---------------------------------------------------------------------------
def classifier(arch, num_classes=1000, in_channels=512):
    """PVTACmix with PVT's final norm, global pooling and a linear head."""
    from mmengine.registry import MODELS, DefaultScope
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return MODELS.build(
            dict(
                type='ImageClassifier',
                backbone=dict(
                    type='PVTACmix',
                    arch=arch,
                    out_indices=(3, ),
                    out_norms=True),
                neck=dict(type='GlobalAveragePooling'),
                head=dict(
                    type='LinearClsHead',
                    num_classes=num_classes,
                    in_channels=in_channels))).eval()


def conv_path_flops(backbone, height, width):
    """Per block: fc (3 * heads -> 9 maps per channel index), ``9 C`` per
    pixel for the queries at full resolution and ``18 C`` for the keys and
    values at the reduced one, and the 3x3 group convolution (``81 C`` per
    pixel at full resolution)."""
    total = 0
    for i, stage in enumerate(backbone.stages):
        rows, cols = height // 2**(i + 2), width // 2**(i + 2)
        ratio = stage.blocks[0].attn.sr_ratio
        reduced = (rows // ratio) * (cols // ratio)
        total += len(stage.blocks) * backbone.num_features[i] * (
            90 * rows * cols + 18 * reduced)
    return total


@pytest.mark.parametrize('arch, layers', [('tiny', [2, 2, 2, 2]),
                                          ('small', [3, 4, 6, 3])])
@torch.no_grad()
def test_flops_are_pvt_plus_the_conv_path(arch, layers):
    """Ours = mmdet's PVT (counting its attention bmm like our fused one,
    without the position-embedding resizing it does even at the
    pre-training size) + the convolution paths; no other extra cost."""
    from mmdet.models.backbones import PyramidVisionTransformer
    x = (torch.randn(1, 3, 224, 224), )
    ours = PVTACmix(arch).eval()
    pvt = PyramidVisionTransformer(num_layers=layers).eval()
    resize_flops = sum(4 * c * (56 // 2**i)**2
                       for i, c in enumerate(ours.num_features))
    ours_flops, _ = complexity(ours, x)
    pvt_flops, _ = complexity(pvt, x)
    assert ours_flops == (pvt_flops - resize_flops +
                          conv_path_flops(ours, 224, 224))


@pytest.mark.parametrize('arch, flops, params', [('tiny', 2.0e9, 13e6),
                                                 ('small', 3.9e9, 25e6)])
@torch.no_grad()
def test_classifier_budget_at_224(arch, flops, params):
    """Paper Table 4: PVT-ACmix-T 13M / 2.0G, -S 25M / 3.9G."""
    ours_flops, ours_params = complexity(
        classifier(arch), (torch.randn(1, 3, 224, 224), ))
    assert abs(ours_params / params - 1) <= 0.04
    assert abs(ours_flops / flops - 1) <= 0.02


# ---------------------------------------------------------------------------
# whai362/PVT v1 checkpoints
# ---------------------------------------------------------------------------
def whai362_state_dict(arch, num_classes=10, img_size=224):
    """Random weights in the layout of whai362's PVT v1 classifier
    (``pvt_tiny.pth`` ...): per stage ``patch_embed{i}``, ``pos_embed{i}``
    (the last with a class-token slot), ``block{i}.{j}``; then ``norm``,
    ``cls_token``, ``head``."""
    state = {}
    in_channels, patch, stride = 3, 4, 4
    for i, dims in enumerate(arch['embed_dims']):
        s = i + 1
        state[f'patch_embed{s}.proj.weight'] = torch.randn(
            dims, in_channels, patch, patch)
        state[f'patch_embed{s}.proj.bias'] = torch.randn(dims)
        state[f'patch_embed{s}.norm.weight'] = 1 + 0.1 * torch.randn(dims)
        state[f'patch_embed{s}.norm.bias'] = torch.randn(dims)
        tokens = (img_size // stride)**2 + (s == 4)
        state[f'pos_embed{s}'] = torch.randn(1, tokens, dims)
        hidden = dims * arch['mlp_ratios'][i]
        shapes = {
            'norm1': [dims],
            'attn.q': [dims, dims],
            'attn.kv': [2 * dims, dims],
            'attn.proj': [dims, dims],
            'norm2': [dims],
            'mlp.fc1': [hidden, dims],
            'mlp.fc2': [dims, hidden],
        }
        sr = arch['sr_ratios'][i]
        if sr > 1:
            shapes.update({
                'attn.sr': [dims, dims, sr, sr],
                'attn.norm': [dims]
            })
        for j in range(arch['depths'][i]):
            for layer, shape in shapes.items():
                key = f'block{s}.{j}.{layer}'
                state[key + '.weight'] = 0.2 * torch.randn(shape) + (
                    1 if len(shape) == 1 else 0)
                state[key + '.bias'] = 0.1 * torch.randn(shape[0])
        in_channels, patch, stride = dims, 2, stride * 2
    dims = arch['embed_dims'][-1]
    state['norm.weight'] = 1 + 0.1 * torch.randn(dims)
    state['norm.bias'] = torch.randn(dims)
    state['cls_token'] = torch.randn(1, 1, dims)
    state['head.weight'] = torch.randn(num_classes, dims)
    state['head.bias'] = torch.randn(num_classes)
    return state


def test_whai362_layout_is_recognised():
    layout = PVT_V1
    state = whai362_state_dict(MINI)
    assert layout.check(state) == ([], [])
    del state['block3.1.attn.kv.bias']
    state['block1.0.attn.qkv.weight'] = torch.zeros(1)
    missing, unexpected = layout.check(state)
    assert missing == ['block3.1.attn.kv.bias']
    assert unexpected == ['block1.0.attn.qkv.weight']


@pytest.fixture(scope='module')
def whai362_and_converted():
    torch.manual_seed(0)
    state = whai362_state_dict(MINI)
    return state, PVT_V1.convert(state)


@torch.no_grad()
def test_converter_recognises_pvt_v1(whai362_and_converted):
    state, converted = whai362_and_converted
    result, layout = convert_state_dict(state)
    assert layout == 'pvt_v1_official' and result.keys() == converted.keys()


def test_converted_whai362_checkpoint_loads_as_classifier(
        whai362_and_converted):
    """Only the convolution paths are missing: they keep the shift kernels,
    and every block starts at rates (1, 0). The class token is dropped."""
    state, converted = whai362_and_converted
    assert not any('cls_token' in key for key in converted)
    assert converted['backbone.stages.3.pos_embed'].shape == (1, 128, 7, 7)
    torch.testing.assert_close(converted['backbone.stages.3.pos_embed'],
                               state['pos_embed4'][:, 1:].transpose(
                                   1, 2).unflatten(2, (7, 7)))
    torch.testing.assert_close(converted['backbone.norm3.weight'],
                               state['norm.weight'])
    torch.testing.assert_close(converted['head.fc.weight'],
                               state['head.weight'])

    model = classifier(MINI, num_classes=10, in_channels=128)
    kernels = shift_kernels(model)
    missing, unexpected = model.load_state_dict(converted, strict=False)
    assert not unexpected
    assert missing and all('.attn.conv.' in key for key in missing)
    for before, after in zip(kernels, shift_kernels(model), strict=True):
        assert torch.equal(before, after)
    rates = [(m.rate1.item(), m.rate2.item()) for m in model.modules()
             if hasattr(m, 'rate1')]
    assert rates == [(1.0, 0.0)] * sum(MINI['depths'])


@torch.no_grad()
def test_converted_whai362_backbone_equals_mmdet_pvt(whai362_and_converted,
                                                     tmp_path):
    """Loaded as a dense backbone's Pretrained init, the converted file
    computes what mmdet's PVT computes from the original through mmdet's
    own converter."""
    from mmdet.models.backbones.pvt import pvt_convert
    state, converted = whai362_and_converted
    path = tmp_path / 'pvt_mini_acmix.pth'
    torch.save(dict(state_dict=converted), path)
    ours = PVTACmix(
        MINI,
        drop_path_rate=0.,
        init_cfg=dict(type='Pretrained', checkpoint=str(path),
                      prefix='backbone.'))
    ours.init_weights()
    pvt = mmdet_pvt()
    pvt.load_state_dict(pvt_convert(state), strict=True)
    x = torch.randn(1, 3, 230, 301)
    for ours_out, pvt_out in zip(ours.eval()(x), pvt(x), strict=True):
        torch.testing.assert_close(ours_out, pvt_out, **TOLERANCE)


# ---------------------------------------------------------------------------
# Configs
# ---------------------------------------------------------------------------
CONFIGS = sorted((REPO_ROOT / 'configs').glob('*pvt_acmix*.py'))
TOY_DET = REPO_ROOT / 'configs/toy/retinanet_pvt_acmix_toy_coco.py'


def test_all_pvt_acmix_configs_are_listed():
    assert {p.name for p in CONFIGS} == {
        'pvt_acmix_t_in1k.py', 'pvt_acmix_s_in1k.py',
        'retinanet_pvt_acmix_t_1x_coco.py',
        'retinanet_pvt_acmix_s_1x_coco.py',
        'retinanet_pvt_acmix_m_1x_coco.py',
        'retinanet_pvt_acmix_l_1x_coco.py',
        'retinanet_pvt_acmix_t_3x_coco.py',
        'fpn_pvt_acmix_t_40k_ade20k.py', 'fpn_pvt_acmix_s_40k_ade20k.py'
    }


@pytest.mark.parametrize('path', CONFIGS + [TOY_DET], ids=lambda p: p.stem)
def test_config_builds(path):
    from mmengine.config import Config
    from mmengine.registry import MODELS, DefaultScope
    cfg = Config.fromfile(path)
    assert cfg.custom_imports == dict(
        imports=['mmacmix'], allow_failed_imports=False)
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        model = MODELS.build(cfg.model)
    backbone = model.backbone
    assert isinstance(backbone, PVTACmix)
    if path == TOY_DET:
        return
    size = re.search(r'pvt_acmix_(\w)_', path.name).group(1)
    assert [len(stage.blocks) for stage in backbone.stages
            ] == PVTACmix.arch_zoo[size]['depths']
    if path.name.endswith('_in1k.py'):
        assert backbone.out_indices == [3] and backbone.out_norms
        assert cfg.train_cfg.max_epochs == 300
        return
    assert backbone.out_indices == [0, 1, 2, 3] and not backbone.out_norms
    assert backbone.init_cfg == dict(
        type='Pretrained',
        checkpoint=f'checkpoints/pvt_acmix_{size}_in1k.pth',
        prefix='backbone.')
    assert cfg.optim_wrapper.optimizer.type == 'AdamW'
    if path.name.startswith('retinanet'):
        epochs = 36 if '_3x_' in path.name else 12
        assert cfg.train_cfg.max_epochs == epochs
        assert cfg.param_scheduler[-1].milestones == (
            [27, 33] if epochs == 36 else [8, 11])
    else:
        assert cfg.train_cfg.max_iters == 40000
        # PVT's own Semantic FPN recipe (docs/recipes.md): batch 32, lr 2e-4
        assert cfg.optim_wrapper.optimizer.lr == 2e-4
        assert cfg.train_dataloader.batch_size == 4
        assert cfg.crop_size == (512, 512)


def test_toy_retinanet_trains_and_evaluates(toy_workspace):
    work_dir = toy_workspace / 'work_dirs/pvt_acmix_det'
    # the 16 toy images in one batch: one iteration
    run_tool([
        'train.py', TOY_DET, '--work-dir', work_dir, '--cfg-options',
        'train_dataloader.batch_size=16'
    ],
             cwd=toy_workspace)
    checkpoint = torch.load(work_dir / 'epoch_1.pth', weights_only=True)
    assert checkpoint['meta']['iter'] == 1
    proc = run_tool(['test.py', TOY_DET, work_dir / 'epoch_1.pth',
                     '--work-dir', work_dir], cwd=toy_workspace)
    metrics = printed_metrics(proc)
    for key in ('coco/bbox_mAP', 'coco/bbox_mAP_50'):
        assert 0.0 <= metrics[key] <= 1.0
