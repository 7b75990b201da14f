"""ACmixConv2d, ResNet-ACmix's operator with a convolution's signature:
the operator's numerics, the unfold oracle, the arguments it refuses,
mmcv's build_conv_layer, mmdet's ResNet-50 through its DCN slot in a
detector train step, and the torchvision helper."""
import copy
import re

import pytest
import torch
import torch.nn as nn
from mmcv.cnn import build_conv_layer
from mmdet.registry import MODELS as DET_MODELS
from mmdet.testing import demo_mm_inputs
from mmdet.utils import register_all_modules as register_mmdet
from mmengine.config import Config
from mmengine.registry import DefaultScope

import mmacmix  # noqa: F401  (registers ACmixConv2d, fixes torchvision)
from mmacmix.deployment import export_program
from mmacmix.layers import ACmixConv2d, SlidingACmix, swap_resnet_convs

from acmix_oracle import use_unfold_attention
from helpers import REPO_ROOT

register_mmdet(init_default_scope=False)

# RetinaNet R-50 with ACmix in stages 3-4 (docs/design_resnet.md)
CONFIG = 'retinanet_resnet_acmix_r50s34_1x_coco.py'


@pytest.mark.parametrize('stride', [1, 2])
def test_same_numerics_as_the_operator(stride):
    """With the weights of a SlidingACmix, the same outputs and gradients
    (the layer is the operator behind other arguments)."""
    torch.manual_seed(0)
    ref = SlidingACmix(8, 16, kernel_att=7, num_heads=2, kernel_conv=3,
                       stride=stride)
    layer = ACmixConv2d(8, 16, 3, stride, num_heads=2, kernel_att=7)
    layer.acmix.load_state_dict(ref.state_dict())
    x = torch.randn(2, 8, 17, 16, requires_grad=True)
    out, expected = layer(x), ref(x)
    assert out.shape == (2, 16, 17 // stride + 17 % stride, 16 // stride)
    torch.testing.assert_close(out, expected, atol=0, rtol=0)
    grads = torch.autograd.grad(out.square().sum(),
                                [x, *layer.acmix.parameters()])
    ref_grads = torch.autograd.grad(expected.square().sum(),
                                    [x, *ref.parameters()])
    for got, want in zip(grads, ref_grads):
        torch.testing.assert_close(got, want, atol=0, rtol=0)


@pytest.mark.parametrize('kernel_size,stride,dilation', [(3, 1, 1),
                                                         (3, 2, 1),
                                                         (5, 2, 1),
                                                         (3, 1, 2)])
def test_matches_the_unfold_oracle_in_float64(kernel_size, stride, dilation):
    torch.manual_seed(0)
    padding = dilation * (kernel_size // 2)
    layer = ACmixConv2d(6, 8, kernel_size, stride, padding, dilation,
                        bias=True, num_heads=2).double()
    with torch.no_grad():
        layer.bias.normal_()
    oracle = use_unfold_attention(copy.deepcopy(layer))
    x = torch.randn(2, 6, 16, 13, dtype=torch.float64, requires_grad=True)
    out, ref = layer(x), oracle(x)
    # the shape of the convolution it replaces
    conv = nn.Conv2d(6, 8, kernel_size, stride, padding, dilation)
    assert out.shape == conv(x.float()).shape
    torch.testing.assert_close(out, ref, atol=1e-10, rtol=1e-10)
    grads = torch.autograd.grad(out.sin().sum(), [x, *layer.parameters()])
    ref_grads = torch.autograd.grad(ref.sin().sum(),
                                    [x, *oracle.parameters()])
    for got, want in zip(grads, ref_grads):
        torch.testing.assert_close(got, want, atol=1e-10, rtol=1e-10)


def test_bias_is_added_to_the_output():
    torch.manual_seed(0)
    layer = ACmixConv2d(8, 8, bias=True).eval()
    assert torch.equal(layer.bias, torch.zeros(8))
    x = torch.randn(1, 8, 9, 9)
    with torch.no_grad():
        before = layer(x)
        layer.bias.fill_(0.25)
        torch.testing.assert_close(layer(x), before + 0.25)
    assert ACmixConv2d(8, 8).bias is None


def test_bad_arguments_raise_clear_errors():
    cases = [
        (dict(kernel_size=4), ValueError,
         'ACmixConv2d supports odd kernel sizes only, got kernel_size=4'),
        (dict(kernel_size=(3, 5)), ValueError,
         'ACmixConv2d: kernel_size must be an int or a pair of equal ints, '
         'got (3, 5)'),
        (dict(padding=0), ValueError,
         'ACmixConv2d supports only the same padding of its kernel, '
         'padding=1 for kernel_size=3 and dilation=1, got padding=0'),
        (dict(kernel_size=5, padding=1), ValueError,
         'padding=2 for kernel_size=5 and dilation=1, got padding=1'),
        (dict(dilation=2, padding=1), ValueError,
         'padding=2 for kernel_size=3 and dilation=2, got padding=1'),
        (dict(dilation=2, padding=2, stride=2), NotImplementedError,
         'SlidingACmix: dilation 2 with stride 2; dilation above 1 needs '
         'stride 1'),
        (dict(dilation=0, padding=0), ValueError,
         'SlidingACmix: dilation must be a positive int, got 0'),
        (dict(groups=2), ValueError,
         'ACmixConv2d does not support grouped convolutions, got groups=2'),
        (dict(out_channels=10), ValueError,
         'out_channels (10) must be divisible by num_heads (4)'),
    ]
    for kwargs, error, message in cases:
        kwargs = dict(dict(in_channels=8, out_channels=8), **kwargs)
        with pytest.raises(error) as info:
            ACmixConv2d(**kwargs)
        assert message in str(info.value), kwargs
    with pytest.raises(ValueError, match="got padding='same'"):
        ACmixConv2d(8, 8, stride=2, padding='same')  # as torch refuses it
    assert ACmixConv2d(8, 8, 5, padding='same').padding == (2, 2)
    # a convolution's arguments as pairs, and its own padding
    layer = ACmixConv2d(8, 8, (5, 5), (2, 2), (2, 2), (1, 1))
    assert (layer.kernel_size, layer.stride, layer.padding) == ((5, 5),
                                                                (2, 2),
                                                                (2, 2))


def test_built_by_mmcv_build_conv_layer():
    layer = build_conv_layer(
        dict(type='ACmixConv2d', num_heads=2), 8, 16, kernel_size=3,
        stride=2, padding=1, dilation=1, bias=False)
    assert type(layer) is ACmixConv2d
    assert layer.acmix.num_heads == 2 and layer.stride == (2, 2)
    assert layer(torch.randn(1, 8, 12, 12)).shape == (1, 16, 6, 6)


def test_bf16_autocast_forward_is_finite():
    torch.manual_seed(0)
    layer = ACmixConv2d(8, 16, stride=2, bias=True)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = layer(torch.randn(2, 8, 16, 16))
    assert out.dtype == torch.bfloat16 and out.shape == (2, 16, 8, 8)
    assert torch.isfinite(out).all()
    dilated = ACmixConv2d(8, 16, padding=2, dilation=2)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = dilated(torch.randn(2, 8, 16, 16))
    assert out.dtype == torch.bfloat16 and out.shape == (2, 16, 16, 16)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize('stride,dilation', [(2, 1), (1, 2)])
def test_torch_export_runs_on_other_sizes(stride, dilation):
    """The exported program (symbolic height and width) gives the
    layer's output at another size, strided or dilated."""
    torch.manual_seed(0)
    layer = ACmixConv2d(8, 16, stride=stride, padding=dilation,
                        dilation=dilation, bias=True, num_heads=2).eval()
    with torch.no_grad():
        layer.bias.normal_()
    program = export_program(layer, torch.randn(1, 8, 17, 19))
    x = torch.randn(1, 8, 23, 16)
    with torch.no_grad():
        torch.testing.assert_close(program.module()(x), layer(x), atol=1e-5,
                                   rtol=1e-5)


def test_mmdet_resnet50_dcn_slot_trains_a_detector_step():
    """RetinaNet R-50 with ACmix in stages 3-4 through ``dcn``: the shift
    kernels survive init_weights, and a train step's gradient reaches the
    ACmix layers."""
    torch.manual_seed(0)
    cfg = Config.fromfile(REPO_ROOT / 'configs' / CONFIG).model
    cfg.backbone.update(
        # zeroed last norms would stop every gradient into the blocks
        zero_init_residual=False,
        init_cfg=None)
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = DET_MODELS.build(cfg)
    model.init_weights()
    backbone = model.backbone
    stages = [backbone.layer1, backbone.layer2, backbone.layer3,
              backbone.layer4]
    for stage, swapped in zip(stages, (False, False, True, True)):
        assert all(
            isinstance(block.conv2, ACmixConv2d) == swapped for block in stage)
    layer = backbone.layer3[0].conv2
    assert layer.stride == (2, 2) and layer.in_channels == 256
    taps = torch.arange(9)
    dep = layer.acmix.conv.dep_conv.weight
    assert torch.equal(dep[:, taps, taps // 3, taps % 3],
                       torch.ones(dep.shape[0], 9))
    # 128 px: layer4's maps are 4x4, the least a 7x7 reflection allows
    packed = demo_mm_inputs(1, [(3, 128, 128)])
    data = model.data_preprocessor(packed, True)
    loss, _ = model.parse_losses(model(**data, mode='loss'))
    assert torch.isfinite(loss)
    loss.backward()
    for stage in (backbone.layer3, backbone.layer4):
        rates = stage[0].conv2.acmix.rates
        assert rates.rate1.grad is not None and rates.rate1.grad.abs() > 0


def test_swap_resnet_convs_of_torchvision():
    from torchvision.models import resnet50  # after mmacmix (see imports)
    torch.manual_seed(0)
    model = resnet50()
    before = {name: type(m) for name, m in model.named_modules()}
    assert swap_resnet_convs(model, stages=(3, 4), num_heads=8) is model
    for stage in (1, 2, 3, 4):
        for block in getattr(model, f'layer{stage}'):
            assert isinstance(block.conv2, ACmixConv2d) == (stage >= 3)
    assert model.layer3[0].conv2.stride == (2, 2)
    assert model.layer4[1].conv2.acmix.num_heads == 8
    # everything else untouched
    after = {name: type(m) for name, m in model.named_modules()}
    for name, kind in before.items():
        if not any(f'layer{s}.' in name and '.conv2' in name for s in (3, 4)):
            assert after[name] is kind, name
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 128, 128)).shape == (1, 1000)


def test_swap_refuses_grouped_convs_of_resnext():
    from torchvision.models import resnext50_32x4d
    with pytest.raises(ValueError, match='groups=32'):
        swap_resnet_convs(resnext50_32x4d(), stages=(4, ))


def _section_blocks():
    """The ```python blocks of docs/design_resnet.md's ACmixConv2d
    section."""
    text = (REPO_ROOT / 'docs' / 'design_resnet.md').read_text()
    section = text.split('## ACmixConv2d')[1].split('\n## ')[0]
    return re.findall(r'^```python\n(.*?)^```', section, re.S | re.M)


def test_docs_blocks_are_the_config_and_run():
    config_block, torchvision_block = _section_blocks()
    config = (REPO_ROOT / 'configs' / CONFIG).read_text()
    # the config is the page's block behind its comment lines
    assert config.endswith(config_block)
    cfg = Config.fromfile(REPO_ROOT / 'configs' / CONFIG)
    assert cfg.model.backbone.dcn == dict(type='ACmixConv2d')
    assert cfg.model.backbone.stage_with_dcn == (False, False, True, True)
    exec(compile(torchvision_block, 'design_resnet.md', 'exec'), {})
