"""Converting the checkpoints users already hold: mmpretrain's and timm's
Swin Transformer and the SAN authors' SAN (the converted SwinACmix and
SAN-ACmix compute exactly the source models), and the layout detection that
tells them from ours."""
import re

import pytest
import torch
from source_models import (SAN_10, mmpretrain_swin_t, san_logits,
                           san_state_dict, save_as_san_does, timm_swin_t)

import mmacmix  # noqa: F401  (registers SwinACmix; torchvision patch)
from mmacmix.models.converters import (ConversionError, convert_checkpoint,
                                       convert_state_dict)

TOLERANCE = dict(rtol=1e-4, atol=1e-4)
SWIN_T_BLOCKS = [(0, 0), (0, 1), (1, 0), (1, 1)] + [(2, j) for j in range(6)] \
    + [(3, 0), (3, 1)]


def swin_acmix_t_classifier():
    """A SwinACmix-T ImageNet classifier."""
    from mmengine.registry import MODELS, DefaultScope
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return MODELS.build(
            dict(
                type='ImageClassifier',
                backbone=dict(
                    type='SwinACmix',
                    arch='tiny',
                    drop_path_rate=0.,
                    out_indices=(3, )),
                neck=dict(type='GlobalAveragePooling'),
                head=dict(
                    type='LinearClsHead', num_classes=1000,
                    in_channels=768))).eval()


def assert_converts_to_same_logits(state, layout, source_logits, image):
    """Convert ``state``, check it is found as ``layout``, and that a
    SwinACmix-T loading it gives ``source_logits`` with only the
    convolution paths (``fc``, ``dep_conv``) left at their init.

    Args:
        state (dict): The source model's state dict.
        layout (str): The layout the converter must find.
        source_logits (Tensor): The source model's logits on ``image``.
        image (Tensor): ``(1, 3, 224, 224)``.
    """
    converted, found = convert_state_dict(state)
    assert found == layout
    for key in (k for k in converted if '.rates.' in k):
        assert converted[key].item() == float(key.endswith('rate1'))
    classifier = swin_acmix_t_classifier()
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
    source = mmpretrain_swin_t()
    with torch.no_grad():
        logits = source(image, mode='tensor')
    assert_converts_to_same_logits(source.state_dict(), 'swin_mmpretrain',
                                   logits, image)


def test_timm_swin_t_converts_to_the_same_logits(image):
    source = timm_swin_t()
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
def test_san_checkpoint_converts_to_san_acmix_computing_san(tmp_path):
    """Every SAN tensor is loaded (the operator's conv1/2/3 fused into
    qkv); only the convolution paths keep their init, the rates start at
    (1, 0), and the converted SAN-ACmix-10 gives SAN's logits."""
    from mmengine.registry import MODELS, DefaultScope
    state = san_state_dict(**SAN_10)
    src, dst = tmp_path / 'san10.pth', tmp_path / 'converted.pth'
    save_as_san_does(state, src)
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
