"""Bad arguments and inputs of every backbone and of the ACmix convolution
path: a ValueError or TypeError naming the argument, the value given and
what is allowed (or the smallest input in pixels), never an error from
deep inside the model."""
import pytest
import torch

import mmacmix  # noqa: F401  (registers the backbones)
from mmacmix.layers import ACmixConvPath
from mmacmix.models.backbones import PVTACmix, ResNetACmix, SANACmix, SwinACmix

SWIN = dict(embed_dims=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 2])
PVT = dict(embed_dims=[16, 16, 32, 32], depths=[1, 1, 1, 1],
           num_heads=[1, 1, 2, 2], sr_ratios=[8, 4, 2, 1],
           mlp_ratios=[2, 2, 2, 2])
SAN_SMALL = dict(stem_channels=8, stage_channels=(32, 32, 32, 32, 32))
RESNET_SMALL = dict(stem_channels=8, base_channels=4)

# name: (builder taking the backbone's keyword arguments, its number of
# stages, an input size it takes)
BACKBONES = {
    'SwinACmix': (lambda **kw: SwinACmix(SWIN, **kw), 4, 32),
    'PVTACmix': (lambda **kw: PVTACmix(PVT, **kw), 4, 32),
    'ResNetACmix': (lambda **kw: ResNetACmix(26, **RESNET_SMALL, **kw), 4,
                    49),
    'SANACmix': (lambda **kw: SANACmix(10, **SAN_SMALL, **kw), 5, 97),
}


@pytest.fixture(scope='module', params=list(BACKBONES))
def backbone(request):
    build, num_stages, size = BACKBONES[request.param]
    return request.param, build, num_stages, size


def test_empty_batch_and_3d_input(backbone):
    name, build, _, size = backbone
    model = build().eval()
    with pytest.raises(ValueError,
                       match=rf'^{name}.* a batch of at least one image, got '
                       rf'\(0, 3, {size}, {size}\)'):
        model(torch.zeros(0, 3, size, size))
    with pytest.raises(ValueError,
                       match=rf'^{name}.* inputs of shape \(B, 3, H, W\), got '
                       rf'\(3, {size}, {size}\) \(add a batch dim'):
        model(torch.zeros(3, size, size))
    with pytest.raises(ValueError, match=r'\(B, 3, H, W\), got \(1, 4, '):
        model(torch.zeros(1, 4, size, size))


def test_frozen_stages_beyond_the_stages(backbone):
    name, build, num_stages, _ = backbone
    allowed = rf'an int in -1\.\.{num_stages}'
    with pytest.raises(ValueError, match=rf'^{name}: frozen_stages must be '
                       rf'{allowed} .*, got {num_stages + 1}$'):
        build(frozen_stages=num_stages + 1)
    with pytest.raises(ValueError, match=r'frozen_stages .*, got -2$'):
        build(frozen_stages=-2)
    with pytest.raises(TypeError, match=r"frozen_stages .*, got '1'$"):
        build(frozen_stages='1')
    build(frozen_stages=num_stages)  # every stage: allowed


@pytest.mark.parametrize('out_indices, error, message', [
    (3, TypeError, r'out_indices must be a sequence of stage indices, e\.g\. '
     r'\(\d, \), got 3$'),
    ((), ValueError, r'out_indices must name at least one stage \(indices '
     r'in -\d\.\.\d \(\d stages\)\), got \(\)$'),
    ((9, ), ValueError, r'out_indices must hold indices in .*, got \(9,\)$'),
    ((1, 1), ValueError, r'out_indices names a stage twice: \(1, 1\)$'),
    (('1', ), TypeError, r"out_indices must be a sequence .*, got \('1',\)$"),
])
def test_bad_out_indices(backbone, out_indices, error, message):
    name, build, _, _ = backbone
    with pytest.raises(error, match=rf'^{name}: {message}'):
        build(out_indices=out_indices)


def test_wrong_arch_names():
    with pytest.raises(ValueError, match=r"^SwinACmix: arch must be one of "
                       r"\['s', 'small', 't', 'tiny'\] or a dict with the "
                       r"keys .*, got 'huge'$"):
        SwinACmix('huge')
    with pytest.raises(ValueError, match=r"^PVTACmix: arch must be one of "
                       r"\['l', 'large', .*got 'huge'$"):
        PVTACmix('huge')
    with pytest.raises(TypeError, match=r'^SwinACmix: arch must be .*, got '
                       r'96$'):
        SwinACmix(96)
    for depth, error in (('50', TypeError), (50.0, TypeError),
                         (18, ValueError), (True, TypeError)):
        with pytest.raises(error, match=r'^ResNetACmix: depth must be one of '
                           rf'the ints \[26, 38, 50\], got {depth!r}$'):
            ResNetACmix(depth)
        with pytest.raises(error, match=r'^SANACmix: depth must be one of '
                           rf'the ints \[10, 15, 19\], got {depth!r}$'):
            SANACmix(depth)


def _resnet_stages(model, x):
    """ResNetACmix's forward without its input check."""
    x = model.maxpool(model.relu(model.bn1(model.conv1(x))))
    for name in model.res_layers:
        x = getattr(model, name)(x)


def _san_stages(model, x):
    """SANACmix's forward without its input check."""
    x = model.relu(model.stem_norm(model.stem(x)))
    for stage in model.stages:
        x = stage(x)


@pytest.mark.parametrize('build, stages, smallest', [
    (lambda: ResNetACmix(26, **RESNET_SMALL), _resnet_stages, 49),
    (lambda: ResNetACmix(38, **RESNET_SMALL), _resnet_stages, 97),
    (lambda: ResNetACmix(26, kernel_att=5, **RESNET_SMALL), _resnet_stages,
     33),
    (lambda: SANACmix(10, **SAN_SMALL), _san_stages, 97),
    (lambda: SANACmix(10, kernel_att=(3, 3, 3, 3, 3), **SAN_SMALL),
     _san_stages, 33),
])
def test_smallest_input_in_pixels(build, stages, smallest):
    """The too-small message names the smallest image, which is exact: it
    runs, one pixel less fails inside the model (an ACmix operator's map
    smaller than its reflection padding)."""
    model = build().eval()
    assert model.min_input_size == smallest
    with torch.no_grad():
        model(torch.zeros(1, 3, smallest, smallest + 5))
        with pytest.raises(ValueError,
                           match=rf'depth {model.depth}\) needs inputs of at '
                           rf'least {smallest}x{smallest} pixels, got '
                           rf'{smallest - 1}x{smallest + 5}$'):
            model(torch.zeros(1, 3, smallest - 1, smallest + 5))
        with pytest.raises(ValueError, match='larger than'):
            stages(model, torch.zeros(1, 3, smallest - 1, smallest + 5))


@pytest.mark.parametrize('kernel_size', [4, 2, 0, -3, 3.0, True])
def test_conv_path_kernel_must_be_odd(kernel_size):
    with pytest.raises(ValueError,
                       match=r'^ACmixConvPath: kernel_size \(kernel_conv of '
                       r'the backbones\) must be a positive odd int, got '
                       rf'{kernel_size!r}$'):
        ACmixConvPath(2, 4, kernel_size=kernel_size)


def test_even_kernel_conv_of_a_backbone():
    with pytest.raises(ValueError, match=r'kernel_size .* got 4$'):
        SwinACmix(SWIN, kernel_conv=4)
    with pytest.raises(ValueError, match=r'stride must be a positive int, '
                       r'got 0$'):
        ACmixConvPath(2, 4, stride=0)


def test_deprecated_pretrained_becomes_init_cfg(backbone):
    """``pretrained=`` as in mmdet's and mmseg's backbones (mmseg's
    segmentors pass theirs to the backbone): the same warning, a
    ``Pretrained`` init_cfg, an error with ``init_cfg`` too."""
    name, build, _, _ = backbone
    url = 'open-mmlab://resnet50_v1c'
    with pytest.warns(UserWarning, match=r'^DeprecationWarning: pretrained '
                      r'is deprecated, please use "init_cfg" instead$'):
        model = build(pretrained=url)
    assert model.init_cfg == dict(type='Pretrained', checkpoint=url)
    assert build(pretrained=None).init_cfg is None
    init_cfg = dict(type='Pretrained', checkpoint='a.pth')
    with pytest.raises(ValueError, match=rf'^{name}: init_cfg and pretrained '
                       r'cannot be specified at the same time, got '
                       r"init_cfg=\{.*'a\.pth'\} and pretrained="
                       r"'open-mmlab://resnet50_v1c' \(mmseg's segmentors "
                       r'pass their model-level pretrained to the backbone: '
                       r'set it to None\)$'):
        build(init_cfg=init_cfg, pretrained=url)
    with pytest.raises(TypeError, match=rf'^{name}: pretrained must be a str '
                       r'or None, got True$'):
        build(pretrained=True)
