"""tools/model_converters/acmix_official.py and mmacmix.models.converters:
official checkpoints, read without running pickled code, reproduce the
official numerics in this project's layout."""
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import mmacmix  # noqa: F401  (registers SwinACmix)
from mmacmix.models.backbones import SwinACmix
from mmacmix.models.converters import (ConversionError, convert_checkpoint,
                                       convert_state_dict, extract_state_dict,
                                       load_official_checkpoint)

MINI = dict(embed_dims=32, depths=[2, 2, 2, 2], num_heads=[1, 2, 4, 8])
TOLERANCE = dict(rtol=1e-4, atol=1e-4)


@pytest.fixture(scope='module')
def official_ckpt(reference_dir):
    return reference_dir / 'swin_acmix_mini_official_ckpt.pth'


@pytest.fixture(scope='module')
def expected(reference_dir):
    return torch.load(reference_dir / 'swin_acmix_mini_expected.pth')


@pytest.fixture(scope='module')
def converted(official_ckpt, tmp_path_factory):
    path = tmp_path_factory.mktemp('converted') / 'swin_acmix_mini.pth'
    assert convert_checkpoint(official_ckpt, path) == 'swin_acmix_official'
    return path


def stage_outputs(backbone, x):
    """Outputs of every stage's last block (before patch merging and the out
    norms), NCHW, as the reference records them."""
    outs = []
    hooks = [
        stage.blocks[-1].register_forward_hook(
            lambda module, args, out: outs.append(out.permute(0, 3, 1, 2)))
        for stage in backbone.stages
    ]
    with torch.no_grad():
        backbone(x)
    for hook in hooks:
        hook.remove()
    return outs


def assert_matches_reference(backbone, expected):
    for out, ref in zip(
            stage_outputs(backbone, expected['input']),
            expected['stage_outputs'],
            strict=True):
        torch.testing.assert_close(out, ref, **TOLERANCE)


def test_official_checkpoint_is_refused_by_weights_only_load(official_ckpt):
    with pytest.raises(pickle.UnpicklingError, match='yacs.config.CfgNode'):
        torch.load(official_ckpt)


def test_converted_classifier_reproduces_official_logits(converted, expected):
    from mmengine.registry import MODELS, DefaultScope
    from mmengine.runner import load_checkpoint
    checkpoint = torch.load(converted)  # plain types: weights_only is fine
    assert checkpoint['meta']['layout'] == 'swin_acmix_official'
    assert checkpoint['meta']['source_meta']['config']['MODEL']['SWIN'][
        'EMBED_DIM'] == 32
    assert not any('relative_position_index' in k or 'attn_mask' in k
                   for k in checkpoint['state_dict'])

    with DefaultScope.overwrite_default_scope('mmpretrain'):
        classifier = MODELS.build(
            dict(
                type='ImageClassifier',
                backbone=dict(
                    type='SwinACmix',
                    arch=MINI,
                    drop_path_rate=0.,
                    out_indices=(3, )),
                neck=dict(type='GlobalAveragePooling'),
                head=dict(
                    type='LinearClsHead', num_classes=10,
                    in_channels=256))).eval()
    load_checkpoint(classifier, str(converted), strict=True)
    with torch.no_grad():
        logits = classifier(expected['input'], mode='tensor')
    torch.testing.assert_close(logits, expected['logits'], **TOLERANCE)
    assert_matches_reference(classifier.backbone, expected)


def test_converted_checkpoint_as_backbone_pretrained_init(
        converted, expected):
    """Pretrained loading comes after other initialisers and after the
    shift kernels are re-applied, so it is not overwritten."""
    backbone = SwinACmix(
        MINI,
        drop_path_rate=0.,
        init_cfg=[
            dict(type='Kaiming', layer=['Conv2d', 'Linear']),
            dict(
                type='Pretrained', checkpoint=str(converted),
                prefix='backbone.')
        ])
    backbone.init_weights()
    assert_matches_reference(backbone.eval(), expected)


def test_plain_swin_checkpoint_starts_attention_only(official_ckpt, tmp_path):
    """A microsoft Swin checkpoint (the mini one without its ACmix keys)
    converts with rates (1, 0) and leaves fc and the shift kernels to the
    model's initialisation."""
    checkpoint = load_official_checkpoint(official_ckpt)
    checkpoint['model'] = {
        k: v
        for k, v in checkpoint['model'].items()
        if not any(part in k for part in ('.fc.', 'dep_conv', 'rate'))
    }
    swin_path = tmp_path / 'swin.pth'
    torch.save(checkpoint['model'], swin_path)
    converted = tmp_path / 'converted.pth'
    assert convert_checkpoint(swin_path, converted) == 'swin_official'

    state = torch.load(converted)['state_dict']
    rate_keys = [k for k in state if '.rates.' in k]
    assert len(rate_keys) == 2 * 8
    for key in rate_keys:
        assert state[key].item() == (1. if key.endswith('rate1') else 0.)

    backbone = SwinACmix(MINI, drop_path_rate=0., out_indices=(3, ))
    kernels = backbone.stages[0].blocks[0].attn.conv.dep_conv.weight.clone()
    missing, unexpected = backbone.load_state_dict(
        {k[len('backbone.'):]: v
         for k, v in state.items() if k.startswith('backbone.')},
        strict=False)
    assert not unexpected
    assert sorted(missing) == sorted(
        f'stages.{i}.blocks.{j}.attn.conv.{name}' for i in range(4)
        for j in range(2)
        for name in ('fc.weight', 'fc.bias', 'dep_conv.weight'))
    assert torch.equal(backbone.stages[0].blocks[0].attn.conv.dep_conv.weight,
                       kernels)


def test_unknown_layout_names_missing_and_unexpected_keys(official_ckpt):
    state = extract_state_dict(load_official_checkpoint(official_ckpt))
    state['extra.weight'] = torch.zeros(1)
    del state['layers.1.blocks.0.attn.dep_conv.weight']
    with pytest.raises(ConversionError) as error:
        convert_state_dict(state)
    message = str(error.value)
    assert "Closest is 'swin_acmix_official'" in message
    assert ('missing keys: 1 (layers.1.blocks.0.attn.dep_conv.weight)'
            in message)
    assert 'unexpected keys: 1 (extra.weight)' in message

    # a ResNet stem alone: the closest layout and what it lacks, by name
    with pytest.raises(ConversionError,
                       match=r"Closest is 'resnet_acmix_official': missing "
                       r'keys: 3 \(bn1.weight, fc.weight, fc.bias\)'):
        convert_state_dict({'conv1.weight': torch.zeros(1)})


class _RunsCode:

    def __reduce__(self):
        return os.system, (f'touch {self.marker}', )


def test_loading_never_runs_pickled_code(tmp_path):
    marker = tmp_path / 'executed'
    payload = _RunsCode()
    payload.marker = marker
    path = tmp_path / 'malicious.pth'
    torch.save({'model': {'w': torch.ones(2)}, 'config': payload}, path)
    checkpoint = load_official_checkpoint(path)
    assert not marker.exists()
    assert torch.equal(checkpoint['model']['w'], torch.ones(2))
    assert dict(checkpoint['config']) == {}


def test_command_line_tool(official_ckpt, tmp_path, expected):
    tool = (Path(__file__).parents[1] /
            'tools/model_converters/acmix_official.py')
    dst = tmp_path / 'out.pth'
    subprocess.run([sys.executable, tool, official_ckpt, dst],
                   check=True,
                   cwd=tmp_path)
    backbone = SwinACmix(
        MINI,
        drop_path_rate=0.,
        init_cfg=dict(type='Pretrained', checkpoint=str(dst),
                      prefix='backbone.'))
    backbone.init_weights()
    assert_matches_reference(backbone.eval(), expected)

    bad = subprocess.run([
        sys.executable, tool, official_ckpt.parent /
        'swin_acmix_mini_expected.pth', tmp_path / 'bad.pth'
    ],
                         cwd=tmp_path,
                         capture_output=True,
                         text=True)
    assert bad.returncode == 1
    assert 'matches no known layout' in bad.stderr
