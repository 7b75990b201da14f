"""Converting the checkpoints users already hold: mmpretrain's and timm's
Swin Transformer and the SAN authors' SAN (the converted SwinACmix and
SAN-ACmix compute exactly the source models), and the layout detection that
tells them from ours."""
import re

import pytest
import torch
import torch.nn.functional as F

import mmacmix  # noqa: F401  (registers SwinACmix; torchvision patch)
from mmacmix.models.converters import (ConversionError, convert_checkpoint,
                                       convert_state_dict)

TOLERANCE = dict(rtol=1e-4, atol=1e-4)
SWIN_T_BLOCKS = [(0, 0), (0, 1), (1, 0), (1, 1)] + [(2, j) for j in range(6)] \
    + [(3, 0), (3, 1)]


def randomize(model: torch.nn.Module) -> torch.nn.Module:
    """Move every parameter off its initialisation (norms, biases and the
    relative position tables included), so no weight goes unchecked."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.05 * torch.randn(param.shape, generator=generator))
    return model.eval()


def swin_acmix_classifier(arch: str):
    """A SwinACmix ImageNet classifier of ``arch`` (tiny or small)."""
    from mmengine.registry import MODELS, DefaultScope
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return MODELS.build(
            dict(
                type='ImageClassifier',
                backbone=dict(
                    type='SwinACmix',
                    arch=arch,
                    drop_path_rate=0.,
                    out_indices=(3, )),
                neck=dict(type='GlobalAveragePooling'),
                head=dict(
                    type='LinearClsHead', num_classes=1000,
                    in_channels=768))).eval()


def assert_converts_to_same_logits(state, layout, source_logits, image):
    """Convert ``state``, check it is found as ``layout``, and that a
    SwinACmix-T loading it gives ``source_logits`` with only the
    convolution paths (``fc``, ``dep_conv``) left at their init."""
    converted, found = convert_state_dict(state)
    assert found == layout
    for key in (k for k in converted if '.rates.' in k):
        assert converted[key].item() == float(key.endswith('rate1'))
    classifier = swin_acmix_classifier('tiny')
    missing, unexpected = classifier.load_state_dict(converted, strict=False)
    assert not unexpected
    assert sorted(missing) == sorted(
        f'backbone.stages.{i}.blocks.{j}.attn.conv.{name}'
        for i, j in SWIN_T_BLOCKS
        for name in ('fc.weight', 'fc.bias', 'dep_conv.weight'))
    with torch.no_grad():
        logits = classifier(image, mode='tensor')
    torch.testing.assert_close(logits, source_logits, **TOLERANCE)


@pytest.fixture(scope='module')
def image():
    generator = torch.Generator().manual_seed(1)
    return torch.randn(1, 3, 224, 224, generator=generator)


def test_mmpretrain_swin_t_converts_to_the_same_logits(image):
    from mmengine.registry import MODELS, DefaultScope
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        source = randomize(
            MODELS.build(
                dict(
                    type='ImageClassifier',
                    backbone=dict(
                        type='SwinTransformer', arch='tiny', img_size=224,
                        drop_path_rate=0.),
                    neck=dict(type='GlobalAveragePooling'),
                    head=dict(
                        type='LinearClsHead', num_classes=1000,
                        in_channels=768))))
    with torch.no_grad():
        logits = source(image, mode='tensor')
    assert_converts_to_same_logits(source.state_dict(), 'swin_mmpretrain',
                                   logits, image)


def test_timm_swin_t_converts_to_the_same_logits(image):
    timm = pytest.importorskip('timm')
    source = randomize(
        timm.create_model('swin_tiny_patch4_window7_224', pretrained=False))
    with torch.no_grad():
        logits = source(image)
    assert_converts_to_same_logits(source.state_dict(), 'swin_timm', logits,
                                   image)


def test_shared_prefixes_alone_are_not_ours():
    """Keys under ``backbone.``/``head.`` that are not a layout found and
    hold no ACmix rates are reported as unknown, with the closest layout."""
    with pytest.raises(ConversionError,
                       match=re.escape('matches no known layout. Closest is '
                                       "'swin_mmpretrain'")):
        convert_state_dict({
            'backbone.patch_embed.projection.weight': torch.ones(1),
            'head.fc.weight': torch.ones(1)
        })
    with pytest.raises(ConversionError,
                       match="already in this project's layout"):
        convert_state_dict({
            'backbone.patch_embed.projection.weight': torch.ones(1),
            'backbone.stages.0.blocks.0.attn.rates.rate1': torch.ones(1)
        })


# ---------------------------------------------------------------------------
# the SAN authors' patchwise SAN (hszhao/SAN, model/san.py), into SAN-ACmix
# ---------------------------------------------------------------------------
SAN_10 = dict(layers=(2, 1, 2, 4, 1), kernels=(3, 7, 7, 7, 7))
SAN_NORM_STATS = ('weight', 'bias', 'running_mean', 'running_var',
                  'num_batches_tracked')


def san_state_dict(layers, kernels, num_classes=1000, seed=0):
    """Random weights under the names and shapes of SAN's patchwise model
    (``san(sa_type=1, ...)``): stem ``conv_in``/``bn_in``, per stage ``s`` a
    transition ``conv{s}``/``bn{s}`` and bottlenecks ``layer{s}.{b}``
    (``bn1``, ``sam``, ``bn2``, ``conv``), then ``fc``. Norms in eval
    form: running statistics of reasonable size. The attention weights
    are small, as trained ones are: SAN's are not normalised, so random
    ones of unit size grow the activations quadratically, block after
    block."""
    generator = torch.Generator().manual_seed(seed)
    state = {}

    def conv(key, out_channels, in_channels, bias=True, scale=1.):
        state[key + '.weight'] = scale * torch.randn(
            out_channels, in_channels, 1, 1,
            generator=generator) / in_channels**0.5
        if bias:
            state[key + '.bias'] = 0.1 * torch.randn(out_channels,
                                                     generator=generator)

    def norm(key, channels):
        values = dict(
            weight=1 + 0.1 * torch.randn(channels, generator=generator),
            bias=0.1 * torch.randn(channels, generator=generator),
            running_mean=0.1 * torch.randn(channels, generator=generator),
            running_var=0.5 + torch.rand(channels, generator=generator),
            num_batches_tracked=torch.tensor(100))
        state.update({f'{key}.{name}': values[name]
                      for name in SAN_NORM_STATS})

    conv('conv_in', 64, 3, bias=False)
    norm('bn_in', 64)
    in_channels = 64
    for s, (blocks, kernel) in enumerate(zip(layers, kernels)):
        c = 64 * 2**(s + 1) if s else 64
        conv(f'conv{s}', c, in_channels, bias=False)
        norm(f'bn{s}', c)
        rel, mid, share = c // 16, c // 4, 8
        for b in range(blocks):
            block = f'layer{s}.{b}.'
            norm(block + 'bn1', c)
            conv(block + 'sam.conv1', rel, c)
            conv(block + 'sam.conv2', rel, c)
            conv(block + 'sam.conv3', mid, c)
            norm(block + 'sam.conv_w.0', rel * (kernel**2 + 1))
            conv(block + 'sam.conv_w.2', mid // share, rel * (kernel**2 + 1),
                 bias=False)
            norm(block + 'sam.conv_w.3', mid // share)
            conv(block + 'sam.conv_w.5', kernel**2 * mid // share,
                 mid // share, scale=0.05)
            norm(block + 'bn2', mid)
            conv(block + 'conv', c, mid)
        in_channels = c
    state['fc.weight'] = torch.randn(
        num_classes, in_channels, generator=generator) / in_channels**0.5
    state['fc.bias'] = torch.zeros(num_classes)
    return state


def san_logits(state, x, layers, kernels):
    """SAN's patchwise network in eval mode, written from the paper
    (Zhao et al., CVPR 2020, eq. 4) with ``F.unfold``: per pixel, weights
    for the whole footprint from ``[query, keys of the footprint]`` by the
    MLP ``conv_w``, each weight channel ``g`` shared by the value channels
    ``c`` with ``c % G == g``; keys and values reflection padded."""
    def conv(key, x):
        return F.conv2d(x, state[key + '.weight'], state.get(key + '.bias'))

    def norm(key, x):
        return F.batch_norm(x, state[key + '.running_mean'],
                            state[key + '.running_var'],
                            state[key + '.weight'], state[key + '.bias'])

    def unfold(x, kernel):
        padded = F.pad(x, [kernel // 2] * 4, mode='reflect')
        return F.unfold(padded, kernel)  # (B, C * k*k, H*W), channel-major

    def attention(key, x, kernel):
        batch, _, height, width = x.shape
        q, k, v = (conv(f'{key}.conv{i}', x) for i in (1, 2, 3))
        hidden = torch.cat([q.flatten(2), unfold(k, kernel)], 1)[..., None]
        hidden = F.relu(norm(key + '.conv_w.0', hidden))
        hidden = conv(key + '.conv_w.2', hidden)
        hidden = F.relu(norm(key + '.conv_w.3', hidden))
        weights = conv(key + '.conv_w.5', hidden).view(
            batch, -1, kernel**2, height * width)
        values = unfold(v, kernel).view(batch, v.shape[1], kernel**2, -1)
        groups = v.shape[1] // weights.shape[1]
        out = (weights.repeat(1, groups, 1, 1) * values).sum(2)
        return out.view(batch, -1, height, width)

    x = F.relu(norm('bn_in', conv('conv_in', x)))
    for s, (blocks, kernel) in enumerate(zip(layers, kernels)):
        x = conv(f'conv{s}', F.max_pool2d(x, 2))
        for b in range(blocks):
            block = f'layer{s}.{b}'
            out = attention(block + '.sam', F.relu(norm(block + '.bn1', x)),
                            kernel)
            x = x + conv(block + '.conv', F.relu(norm(block + '.bn2', out)))
        x = F.relu(norm(f'bn{s}', x))
    return F.linear(x.mean((2, 3)), state['fc.weight'], state['fc.bias'])


def test_san_checkpoint_converts_to_san_acmix_computing_san(tmp_path):
    """Every SAN tensor is loaded (the operator's conv1/2/3 fused into
    qkv); only the convolution paths keep their init, the rates start at
    (1, 0), and the converted SAN-ACmix-10 gives SAN's logits."""
    from mmengine.registry import MODELS, DefaultScope
    state = san_state_dict(**SAN_10)
    src, dst = tmp_path / 'san10.pth', tmp_path / 'converted.pth'
    torch.save({'epoch': 100, 'state_dict': {
        'module.' + k: v for k, v in state.items()}}, src)  # as SAN saves
    lines = []
    assert convert_checkpoint(src, dst, report=lines.append) == \
        'san_official'
    assert lines == [
        f'loaded {len(state)} of {len(state)} source tensors; at their '
        "initialisation: every block's convolution path (fc; dep_conv at "
        'its shift kernels); rates set to (1, 0)'
    ]
    converted = torch.load(dst)['state_dict']
    operator = 'backbone.stages.1.blocks.0.acmix.'
    torch.testing.assert_close(
        converted[operator + 'qkv.weight'],
        torch.cat([state[f'layer1.0.sam.conv{i}.weight'] for i in (1, 2, 3)]),
        rtol=0, atol=0)

    with DefaultScope.overwrite_default_scope('mmpretrain'):
        classifier = MODELS.build(
            dict(
                type='ImageClassifier',
                backbone=dict(type='SANACmix', depth=10),
                neck=dict(type='GlobalAveragePooling'),
                head=dict(
                    type='LinearClsHead', num_classes=1000,
                    in_channels=2048))).eval()
    missing, unexpected = classifier.load_state_dict(converted, strict=False)
    assert not unexpected
    blocks = [(s, b) for s, n in enumerate(SAN_10['layers'])
              for b in range(n)]
    assert sorted(missing) == sorted(
        f'backbone.stages.{s}.blocks.{b}.acmix.conv.{name}'
        for s, b in blocks for name in ('fc.weight', 'dep_conv.weight'))
    image = torch.randn(1, 3, 128, 128,
                        generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        logits = classifier(image, mode='tensor')
    torch.testing.assert_close(logits, san_logits(state, image, **SAN_10),
                               **TOLERANCE)


def test_pairwise_san_is_refused():
    """SAN's pairwise models (``sa_type=0``: position encoding ``conv_p``)
    are not SAN-ACmix's attention: the converter names what does not fit."""
    state = san_state_dict(**SAN_10)
    state['layer0.0.sam.conv_p.weight'] = torch.zeros(2, 2, 1, 1)
    with pytest.raises(ConversionError,
                       match=r"Closest is 'san_official': missing keys: "
                       r'none; unexpected keys: 1 '
                       r'\(layer0\.0\.sam\.conv_p\.weight\)'):
        convert_state_dict(state)
