"""Converting the checkpoints users already hold: mmpretrain's and timm's
Swin Transformer (the converted SwinACmix computes exactly the source
model), and the layout detection that tells them from ours."""
import re

import pytest
import torch

import mmacmix  # noqa: F401  (registers SwinACmix; torchvision patch)
from mmacmix.models.converters import ConversionError, convert_state_dict

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
