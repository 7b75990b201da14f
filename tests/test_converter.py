"""tools/model_converters/acmix_official.py and mmacmix.models.converters:
official checkpoints, read without running pickled code, reproduce the
official numerics in this project's layout."""
import importlib.util
import os
import pickle
import random
import re
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
from mmacmix.utils.fileio import atomic_open

TOOL = Path(__file__).parents[1] / 'tools/model_converters/acmix_official.py'

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
    tool = TOOL
    dst = tmp_path / 'out.pth'
    proc = subprocess.run([sys.executable, tool, official_ckpt, dst],
                          check=True,
                          cwd=tmp_path,
                          capture_output=True,
                          text=True)
    # the layout found, then what was loaded and what keeps its init
    state = extract_state_dict(load_official_checkpoint(official_ckpt))
    buffers = [k for k in state
               if k.endswith(('relative_position_index', 'attn_mask'))]
    assert proc.stdout.splitlines() == [
        f'{official_ckpt} (swin_acmix_official) -> {dst}',
        f'loaded {len(state) - len(buffers)} of {len(state)} source tensors '
        f'(the other {len(buffers)}: buffers the model recomputes); at their '
        'initialisation: nothing'
    ]
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
    # one error line, last, exit status 1
    assert bad.returncode == 1
    errors = [line for line in bad.stderr.splitlines() if 'error' in line]
    assert errors == [bad.stderr.splitlines()[-1]]
    assert errors[0].startswith('error: source ')
    assert errors[0].endswith("weights are not all tensors: 'stage_outputs' "
                              "is a list; 'arch' is a dict")


# ---------------------------------------------------------------------------
# the command line tool: bad sources and destinations
# ---------------------------------------------------------------------------
def load_tool():
    spec = importlib.util.spec_from_file_location('acmix_official', TOOL)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


def tool_error(argv) -> str:
    """Run the converter's ``main`` and return the message it exits with
    (what the process prints as its last line, with status 1)."""
    with pytest.raises(SystemExit) as stop:
        load_tool().main([str(a) for a in argv])
    message = stop.value.code
    assert isinstance(message, str) and '\n' not in message
    return message


def _save(obj):
    def write(path):
        torch.save(obj, path)
    return write


def _truncated(official_ckpt):
    def write(path):
        data = official_ckpt.read_bytes()
        path.write_bytes(data[:len(data) // 2])
    return write


_CORRUPT = r'is truncated, corrupt or not a PyTorch checkpoint \(\w+: .*\)$'


def bad_sources(official_ckpt, marker):
    """name: (writes the bad source at a path, message after 'source SRC')."""
    payload = _RunsCode()
    payload.marker = marker
    return {
        'missing': (None, 'does not exist$'),
        'directory': (lambda path: path.mkdir(), 'is not a file$'),
        'empty': (lambda path: path.write_bytes(b''),
                  r'is empty \(0 bytes\)$'),
        'text': (lambda path: path.write_text('model weights, v1\n' * 50),
                 _CORRUPT),
        'random bytes': (lambda path: path.write_bytes(
            random.Random(0).randbytes(4096)), _CORRUPT),
        'truncated': (_truncated(official_ckpt), _CORRUPT),
        'unsafe': (_save(payload), r'the checkpoint holds a posix\.system '
                   r'object \(not loaded\), not a dict of weights$'),
        'unsafe weights': (_save({'model': {'w': torch.ones(1),
                                            'x': payload}}),
                           r"the checkpoint's weights are not all tensors: "
                           r"'x' is a posix\.system object \(not loaded\)$"),
        'a tensor': (_save(torch.ones(3)),
                     'the checkpoint holds a Tensor, not a dict of '
                     'weights$'),
        'no weights': (_save({'model': {}}), 'the checkpoint holds no '
                       'weights$'),
        'another model': (_save({'conv.weight': torch.ones(1)}),
                          'the checkpoint matches no known layout. Closest '
                          'is .* Known layouts: '),
        'our prefixes only': (_save({'state_dict': {
            'backbone.conv1.weight': torch.ones(1),
            'head.fc.weight': torch.ones(1)}}),
            'the checkpoint matches no known layout. Closest is .* Known '
            'layouts: '),
        'already converted': (_save({'state_dict': {
            'backbone.patch_embed.projection.weight': torch.ones(1),
            'backbone.stages.0.blocks.0.attn.rates.rate1': torch.ones(1)}}),
            "the checkpoint is already in this project's layout"),
    }


@pytest.mark.parametrize('case', [
    'missing', 'directory', 'empty', 'text', 'random bytes', 'truncated',
    'unsafe', 'unsafe weights', 'a tensor', 'no weights', 'another model',
    'our prefixes only', 'already converted'
])
def test_bad_source_is_one_error_line(case, official_ckpt, tmp_path):
    marker = tmp_path / 'executed'
    write, message = bad_sources(official_ckpt, marker)[case]
    src, dst = tmp_path / 'src.pth', tmp_path / 'out' / 'dst.pth'
    if write:
        write(src)
    error = tool_error([src, dst])
    assert re.match(rf'error: source {re.escape(str(src))}:? {message}',
                    error), error
    assert not marker.exists()
    assert not dst.parent.exists() or not any(dst.parent.iterdir())


def test_destination_never_overwrites_the_source(official_ckpt, tmp_path):
    src = tmp_path / 'official.pth'
    src.write_bytes(official_ckpt.read_bytes())
    (tmp_path / 'sub').mkdir()
    (tmp_path / 'link.pth').symlink_to(src)
    os.link(src, tmp_path / 'hard.pth')
    for dst in (src, tmp_path / 'sub' / '..' / 'official.pth',
                tmp_path / 'link.pth', tmp_path / 'hard.pth'):
        for force in ([], ['--force']):
            error = tool_error([src, dst, *force])
            assert error == (f'error: destination {dst} is the source {src}; '
                             'the converter never overwrites its source')
    assert src.read_bytes() == official_ckpt.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        'hard.pth', 'link.pth', 'official.pth', 'sub']


def test_existing_destination_needs_force(official_ckpt, tmp_path):
    dst = tmp_path / 'a' / 'b' / 'converted.pth'  # folders are created
    load_tool().main([str(official_ckpt), str(dst)])
    first = torch.load(dst)
    dst.write_bytes(b'older file')
    assert tool_error([official_ckpt, dst]) == (
        f'error: destination {dst} exists; pass --force (overwrite=True) to '
        'replace it')
    assert dst.read_bytes() == b'older file'
    load_tool().main([str(official_ckpt), str(dst), '--force'])
    again = torch.load(dst)
    assert again['meta'] == first['meta']
    assert again['state_dict'].keys() == first['state_dict'].keys()
    # written under a temporary name, renamed: nothing else is left
    assert [p.name for p in dst.parent.iterdir()] == ['converted.pth']
    assert tool_error([official_ckpt, dst.parent]) == (
        f'error: destination {dst.parent} is a directory; give the path of '
        'the file to write')


def test_unwritable_destination(official_ckpt, tmp_path):
    (tmp_path / 'file').write_text('')
    dst = tmp_path / 'file' / 'out.pth'
    # its folder cannot be made: a file is in the way
    assert tool_error([official_ckpt, dst]).startswith(
        f'error: cannot write {dst}: [Errno 17] File exists: ')


def test_failed_save_leaves_the_destination(official_ckpt, tmp_path):
    """atomic_open: an exception while writing keeps the old file and
    removes the temporary one."""
    dst = tmp_path / 'kept.pth'
    dst.write_bytes(b'old')
    with pytest.raises(RuntimeError, match='disk full'):
        with atomic_open(dst) as f:
            f.write(b'new, but incomplete')
            raise RuntimeError('disk full')
    assert dst.read_bytes() == b'old'
    assert [p.name for p in tmp_path.iterdir()] == ['kept.pth']
