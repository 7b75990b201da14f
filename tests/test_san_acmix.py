"""SAN-ACmix: the patchwise ACmix operator against the unfold oracle (SAN's
formulation), its FLOPs, the backbone against the paper's budget, the
configs, and a toy RetinaNet run."""
import copy
import math

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config

import mmacmix  # noqa: F401  (registers the models, fixes torchvision)
from mmacmix.analysis.complexity import complexity, measure
from mmacmix.layers import patchwise_acmix
from mmacmix.layers.patchwise_acmix import PatchwiseACmix
from mmacmix.models.backbones.san_acmix import SANACmix

from helpers import REPO_ROOT, printed_metrics, run_tool
from san_acmix_oracle import (gradcheck_patchwise_functions,
                              unfold_patchwise_attention, use_unfold_attention)

CONFIGS = REPO_ROOT / 'configs'
# the paper's SAN-ACmix (params, FLOPs) at 224x224, and SAN's code's
# parameter counts (SAN-10/15/19 patchwise: the paper's 11.8M/16.2M/20.5M)
PAPER = {10: (12.1e6, 1.9e9), 15: (16.6e6, 2.7e9), 19: (21.2e6, 3.4e9)}
SAN_PARAMS = {10: 11_841_124, 15: 16_181_310, 19: 20_518_470}
SMALL = dict(stem_channels=8, stage_channels=(32, 32, 64, 64, 96))


# ---------------------------------------------------------------------------
# the operator
# ---------------------------------------------------------------------------
def _operator_and_oracle(kernel_att, momentum=0.1):
    torch.manual_seed(0)
    ours = PatchwiseACmix(16, 32, kernel_att).double()
    for norm in (ours.attn_norm1, ours.attn_norm2):
        norm.momentum = momentum
        # statistics and affine maps away from their defaults
        norm.running_mean.uniform_(-1, 1)
        norm.running_var.uniform_(0.5, 2)
        norm.weight.data.uniform_(0.5, 1.5)
        norm.bias.data.uniform_(-0.5, 0.5)
    return ours, use_unfold_attention(copy.deepcopy(ours))


@pytest.mark.parametrize('kernel_att,shape,mode,piece,momentum', [
    (7, (2, 11, 9), 'train', None, 0.1),
    (7, (2, 11, 9), 'eval', None, 0.1),
    (3, (3, 5, 4), 'train', 40, None),  # bands of rows, cumulative stats
    (7, (3, 4, 13), 'train', 32 * 49 * 13 * 8, 0.1),  # two samples a piece
    (7, (1, 4, 4), 'train', None, 0.1),  # the smallest size reflection allows
])
def test_operator_matches_unfold_oracle(monkeypatch, kernel_att, shape, mode,
                                        piece, momentum):
    """Output, the gradients of the input and of every parameter, and the
    running statistics after the step, in float64: the window statistics of
    the first norm are those of SAN's BatchNorm on the unfolded keys, and
    the pieces (``piece`` elements) change nothing."""
    if piece:
        monkeypatch.setattr(patchwise_acmix, '_PIECE_ELEMENTS', piece)
    ours, oracle = _operator_and_oracle(kernel_att, momentum)
    batch, height, width = shape
    x = torch.randn(batch, 16, height, width, dtype=torch.float64,
                    requires_grad=True)
    results = []
    for module in (ours.train(mode == 'train'), oracle.train(mode == 'train')):
        out = module(x)
        grads = torch.autograd.grad(out.sin().sum(),
                                    (x, *module.parameters()))
        results.append((out, *grads, *module.buffers()))
    assert results[0][0].shape == (batch, 32, height, width)
    for got, expected in zip(*results):
        torch.testing.assert_close(got, expected, atol=1e-10, rtol=1e-9)
    if mode == 'train':  # the statistics did move
        assert ours.attn_norm1.num_batches_tracked == 1
        assert not torch.allclose(ours.attn_norm1.running_mean,
                                  _operator_and_oracle(kernel_att)[0]
                                  .attn_norm1.running_mean)


def test_pieces_cover_every_output_row_once(monkeypatch):
    for batch, height, width, channels in ((3, 10, 7, 4), (5, 3, 2, 1)):
        for budget in (1, 40, 200, 10**6):
            monkeypatch.setattr(patchwise_acmix, '_PIECE_ELEMENTS', budget)
            covered = torch.zeros(batch, height, dtype=torch.long)
            for samples, rows in patchwise_acmix._pieces(
                    batch, height, width, channels, 3):
                covered[samples, rows] += 1
                # within the budget unless a piece is a single row
                rows_in = (rows.stop - rows.start) * (samples.stop -
                                                      samples.start)
                assert rows_in == 1 or rows_in * channels * 9 * width <= (
                    budget)
            assert (covered == 1).all()


def test_functions_gradcheck(monkeypatch):
    """Both custom functions, one row per piece."""
    monkeypatch.setattr(patchwise_acmix, '_PIECE_ELEMENTS', 1)
    gradcheck_patchwise_functions('cpu')


def _saved_numels(module, x):
    """Element counts of the distinct tensors a training forward pass saves
    for the backward pass."""
    saved = {}

    def pack(t):
        saved[(t.untyped_storage().data_ptr(), t.shape)] = t.numel()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        module(x)
    return list(saved.values())


def test_backward_keeps_no_unfolded_tensor():
    """No saved tensor is an unfold (49 copies) of the keys or values,
    and all of them together are less than a fifth of the oracle's."""
    ours, oracle = _operator_and_oracle(7)
    x = torch.randn(2, 16, 12, 12, dtype=torch.float64, requires_grad=True)
    values = 2 * 32 * 12 * 12
    padded_values = 2 * 32 * 18 * 18
    ours_saved, oracle_saved = (_saved_numels(m, x) for m in (ours, oracle))
    assert max(ours_saved) == padded_values  # the largest is an input
    assert max(oracle_saved) == 49 * values
    assert sum(oracle_saved) > 5 * sum(ours_saved)


def test_rates_reduce_to_either_path():
    """rates (1, 0): SAN's patchwise attention (the unfold formulation) on
    the projections alone; (0, 1): the convolution path alone, computed here
    from its weights (fc over the query, key and four value groups, d-major
    maps, grouped 3x3 convolution)."""
    torch.manual_seed(0)
    module = PatchwiseACmix(16, 32).eval()
    x = torch.randn(2, 16, 10, 9)
    r = module.head_dims
    with torch.no_grad():
        qkv = F.conv2d(x, module.qkv.weight, module.qkv.bias)
        q, k, v = qkv[:, :r], qkv[:, r:2 * r], qkv[:, 2 * r:]
        module.rates.rate1.fill_(1)
        module.rates.rate2.fill_(0)
        torch.testing.assert_close(
            module(x), unfold_patchwise_attention(module, q, k, v))

        module.rates.rate1.fill_(0)
        module.rates.rate2.fill_(1)
        pieces = qkv.view(2, 6, r, 10, 9)
        maps = torch.einsum('bprhw,tp->brthw', pieces,
                            module.conv.fc.weight).reshape(2, 9 * r, 10, 9)
        conv = F.conv2d(maps, module.conv.dep_conv.weight, padding=1,
                        groups=r)
        torch.testing.assert_close(module(x), conv)


def test_bf16_autocast_on_cpu():
    module = PatchwiseACmix(16, 32).train()
    x = torch.randn(2, 16, 9, 10)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = module(x)
    out.float().sum().backward()
    assert out.shape == (2, 32, 9, 10)
    assert torch.isfinite(module.attn_norm1.running_var).all()
    assert all(p.grad is not None for p in module.parameters())


def test_operator_bad_arguments_and_inputs():
    with pytest.raises(ValueError, match='divisible'):
        PatchwiseACmix(16, 20)
    with pytest.raises(ValueError, match='odd'):
        PatchwiseACmix(16, 32, kernel_att=6)
    module = PatchwiseACmix(16, 32)
    with pytest.raises(ValueError, match='larger than'):
        module(torch.randn(1, 16, 3, 10))
    with pytest.raises(ValueError, match=r'\(B, C, H, W\)'):
        module(torch.randn(16, 10, 10))


def test_flops_counted_by_hand():
    """mmengine's counter with the two handles equals a hand count: the
    1x1 qkv projection, the query part of the weight MLP's first layer,
    the window projection (r*k*k -> G), the second norm (eval: 2 per
    element, mmengine's convention), the weights (G -> G*k*k) and the
    aggregation (k*k per value channel), the conv path's fc (6 -> 9 maps
    per channel index) and its 3x3 group convolution."""
    b, c_in, c_out, h, w = 2, 16, 32, 9, 11
    for k in (3, 7):
        op = PatchwiseACmix(c_in, c_out, k).eval()
        flops, _ = complexity(op, (torch.randn(b, c_in, h, w), ))
        r, g, taps = c_out // 4, c_out // 8, k * k
        per_pixel = (c_in * 6 * r + r * g + r * taps * g + 2 * g + taps *
                     (g * g + c_out) + r * 6 * 9 + c_out * 9 * 9)
        assert flops == b * h * w * per_pixel, k


# ---------------------------------------------------------------------------
# the backbone
# ---------------------------------------------------------------------------
def hand_flops(depth, size=224, stem=64,
               channels=(64, 256, 512, 1024, 2048), kernels=(3, 7, 7, 7, 7),
               num_classes=1000):
    """Multiply-adds of the SAN-ACmix classifier as documented (eval norms
    2 per element, mmengine's convention; max-pools and ReLUs 0)."""
    h = w = size
    flops = h * w * (3 * stem + 2 * stem)  # stem convolution and norm
    prev = stem
    for n, c, k in zip(SANACmix.arch_settings[depth], channels, kernels):
        h, w = math.ceil(h / 2), math.ceil(w / 2)
        r, m, g, taps = c // 16, c // 4, c // 32, k * k
        flops += h * w * (prev * c + 2 * c)  # transition and stage norm
        block = (2 * c + c * 6 * r + r * g + r * taps * g + 2 * g + taps *
                 (g * g + m) + r * 6 * 9 + m * 81 + 2 * m + m * c)
        flops += n * h * w * block
        prev = c
    return flops + h * w * prev + prev * num_classes  # pooling, fc


@pytest.mark.parametrize('depth', [10, 15, 19])
def test_parameter_count_is_san_plus_the_conv_paths(depth):
    """Without the ACmix convolution paths and rates, SAN's parameters
    exactly (SAN's code); with them, within 4% of the paper."""
    model = SANACmix(depth)
    fc = 2048 * 1000 + 1000
    params = sum(p.numel() for p in model.parameters()) + fc
    acmix = sum(p.numel() for name, p in model.named_parameters()
                if '.acmix.conv.' in name or '.acmix.rates.' in name)
    assert params - acmix == SAN_PARAMS[depth]
    assert abs(params / PAPER[depth][0] - 1) < 0.04


@pytest.mark.parametrize('depth', [10, 15, 19])
def test_in1k_config_meets_the_budget(depth):
    """tools/analysis_tools/get_flops.py's count of the config at 224x224
    equals
    the hand count and is within 2% (FLOPs) and 4% (params) of the
    paper."""
    result = measure(Config.fromfile(CONFIGS / f'san_acmix_{depth}_in1k.py'))
    assert result['flops'] == hand_flops(depth)
    params, flops = PAPER[depth]
    assert abs(result['flops'] / flops - 1) < 0.02
    assert abs(result['params'] / params - 1) < 0.04


def test_arch_settings():
    model = SANACmix(19)
    assert [len(s.blocks) for s in model.stages] == [3, 3, 4, 6, 3]
    assert [s.blocks[0].acmix.kernel_att
            for s in model.stages] == [3, 7, 7, 7, 7]
    block = model.stages[4].blocks[0].acmix  # C = 2048
    assert (block.head_dims, block.out_channels,
            block.weight_channels) == (128, 512, 64)
    assert model.num_features == [64, 256, 512, 1024, 2048]


def test_backbone_outputs_any_size():
    model = SANACmix(10, out_indices=(0, 1, 2, 3, 4), **SMALL).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 99, 130))
    # ceil at every max-pool
    assert [o.shape for o in outs] == [
        (1, 32, 50, 65), (1, 32, 25, 33), (1, 64, 13, 17), (1, 64, 7, 9),
        (1, 96, 4, 5)]
    # 3x3 at the last stage
    with pytest.raises(ValueError, match='at least 97x97 pixels, got 96x96'):
        model(torch.randn(1, 3, 96, 96))


def test_backbone_bad_arguments():
    with pytest.raises(ValueError, match='depth'):
        SANACmix(18)
    with pytest.raises(ValueError, match='out_indices'):
        SANACmix(10, out_indices=(5, ))
    with pytest.raises(ValueError, match='stage_channels'):
        SANACmix(10, stage_channels=(64, 256, 512, 1024))
    with pytest.raises(ValueError, match='multiples of 32'):
        SANACmix(10, stage_channels=(64, 256, 512, 1000, 2048))
    with pytest.raises(ValueError, match='kernel_att'):
        SANACmix(10, kernel_att=(7, 7))


def test_frozen_stages_and_norm_eval():
    model = SANACmix(10, frozen_stages=2, norm_eval=True, **SMALL).train()
    frozen = [model.stem, model.stem_norm, model.stages[0], model.stages[1]]
    assert all(not p.requires_grad for m in frozen for p in m.parameters())
    assert all(p.requires_grad for p in model.stages[2].parameters())
    assert not model.stages[1].training
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    # the operators' own norms too
    assert any(m is model.stages[2].blocks[0].acmix.attn_norm1 for m in bns)
    assert bns and not any(m.training for m in bns)
    assert model.stages[2].blocks[0].acmix.training  # only norms in eval
    model = SANACmix(10, **SMALL).train()
    assert all(m.training for m in model.modules())


def test_with_cp_gives_the_same_outputs_and_gradients():
    torch.manual_seed(0)
    plain = SANACmix(10, out_indices=(2, 4), **SMALL).train()
    ckpt = SANACmix(10, out_indices=(2, 4), with_cp=True, **SMALL).train()
    ckpt.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 97, 97)
    grads = []
    for model in (plain, ckpt):
        outs = model(x)
        sum(o.square().mean() for o in outs).backward()
        grads.append([p.grad for p in model.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_init_weights_keep_shift_kernels_and_load_pretrained(tmp_path):
    model = SANACmix(
        10, init_cfg=dict(type='Kaiming', layer='Conv2d'), **SMALL)
    model.init_weights()
    weight = model.stages[3].blocks[1].acmix.conv.dep_conv.weight
    expected = torch.zeros_like(weight)
    taps = torch.arange(9)
    expected[:, taps, taps // 3, taps % 3] = 1
    torch.testing.assert_close(weight, expected)

    state = {'backbone.' + k: v.clone().normal_() if v.is_floating_point()
             else v for k, v in model.state_dict().items()}
    torch.save(dict(state_dict=state), tmp_path / 'ckpt.pth')
    model = SANACmix(10, init_cfg=dict(
        type='Pretrained', checkpoint=str(tmp_path / 'ckpt.pth'),
        prefix='backbone.'), **SMALL)
    model.init_weights()
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, state['backbone.' + key])


# ---------------------------------------------------------------------------
# configs and a toy run
# ---------------------------------------------------------------------------
def test_classification_configs_build():
    from mmpretrain.registry import MODELS
    for depth in (10, 15, 19):
        cfg = Config.fromfile(CONFIGS / f'san_acmix_{depth}_in1k.py')
        assert cfg.optim_wrapper.optimizer.type == 'SGD'
        assert cfg.optim_wrapper.optimizer.lr == 0.1
        assert cfg.optim_wrapper.optimizer.weight_decay == 1e-4
        assert cfg.train_cfg.max_epochs == 100
        assert cfg.train_dataloader.batch_size * 8 == 256
        assert cfg.param_scheduler.type == 'CosineAnnealingLR'
        assert cfg.model.head.loss.label_smooth_val == 0.1
        model = MODELS.build(cfg.model)
        assert model.backbone.depth == depth
        assert sum(p.numel() for p in model.parameters()) == (
            SAN_PARAMS[depth] + sum(
                p.numel() for name, p in model.named_parameters()
                if '.acmix.conv.' in name or '.acmix.rates.' in name))


def test_retinanet_config_builds_and_runs():
    from mmdet.registry import MODELS
    cfg = Config.fromfile(CONFIGS / 'retinanet_san_acmix_19_1x_coco.py')
    assert cfg.optim_wrapper.optimizer.type == 'SGD'
    assert cfg.optim_wrapper.optimizer.lr == 0.01
    assert cfg.train_cfg.max_epochs == 12
    assert cfg.model.backbone.type == 'SANACmix'
    assert cfg.model.backbone.depth == 19
    assert 'style' not in cfg.model.backbone  # the stock ResNet's, deleted
    cfg.model.backbone.init_cfg = None
    model = MODELS.build(cfg.model).eval()
    assert model.backbone.num_features[1:] == cfg.model.neck.in_channels
    with torch.no_grad():
        feats = model.extract_feat(torch.randn(1, 3, 128, 160))
    assert [f.shape for f in feats] == [
        (1, 256, math.ceil(128 / s), math.ceil(160 / s))
        for s in (8, 16, 32, 64, 128)
    ]


def test_toy_retinanet_trains_and_evaluates(toy_workspace):
    config = CONFIGS / 'toy/retinanet_san_acmix_toy_coco.py'
    work_dir = toy_workspace / 'work_dirs/retinanet_san_acmix'
    # one epoch of one iteration (4 images), then validation
    run_tool(['train.py', config, '--work-dir', work_dir, '--cfg-options',
              'train_dataloader.dataset.indices=4'], cwd=toy_workspace)
    state = torch.load(work_dir / 'epoch_1.pth', map_location='cpu',
                       weights_only=True)
    assert state['meta']['iter'] == 1
    # trained: the operators' running statistics moved off their init
    norm1 = 'backbone.stages.1.blocks.0.acmix.attn_norm1'
    assert state['state_dict'][f'{norm1}.num_batches_tracked'] == 1
    assert state['state_dict'][f'{norm1}.running_var'].ne(1).any()
    proc = run_tool(['test.py', config, work_dir / 'epoch_1.pth',
                     '--work-dir',
                     toy_workspace / 'work_dirs/retinanet_san_acmix_test'],
                    cwd=toy_workspace)
    metrics = printed_metrics(proc)
    assert 0.0 <= metrics['coco/bbox_mAP'] <= 1.0
