"""Every shell command of docs/checkpoints.md, run as written in a folder
laid out like a fresh checkout (no checkpoints/, no work_dirs/): the
converter's on stand-ins for the sources (the official mini checkpoint for
swin_acmix_t.pth, mmpretrain's and timm's Swin-T and SAN-19 with random
weights, saved as each saves them), the training ones on the toy data."""
import re
import shutil
import subprocess

import pytest
import torch
from source_models import (mmpretrain_swin_t, san_state_dict, save_as_san_does,
                           timm_swin_t)

from helpers import REPO_ROOT, tool_env

DOC = REPO_ROOT / 'docs' / 'checkpoints.md'


def doc_commands():
    blocks = re.findall(r'```bash\n(.*?)```', DOC.read_text(), re.S)
    return [line for block in blocks for line in block.splitlines()
            if line.strip() and not line.startswith('#')]


def run(command, cwd):
    return subprocess.run(['bash', '-c', command], cwd=cwd, env=tool_env(),
                          capture_output=True, text=True, timeout=900)


def checkout_like(folder, data=None):
    """``folder`` with the checkout's tools/ and configs/ (and a data/)."""
    folder.mkdir(exist_ok=True)
    for name in ('tools', 'configs'):
        (folder / name).symlink_to(REPO_ROOT / name)
    if data is not None:
        (folder / 'data').symlink_to(data)
    return folder


def test_every_command_is_run_here():
    commands = doc_commands()
    assert commands
    assert all(c.startswith(('python tools/model_converters/acmix_official.py'
                             ' ', 'python tools/train.py '))
               for c in commands), commands


def _stand_ins(reference_dir):
    """Source file name in the doc: (writes a stand-in for it at a path,
    the layout the converter must find)."""
    def copy_official(path):
        shutil.copy(reference_dir / 'swin_acmix_mini_official_ckpt.pth', path)

    def mmpretrain_swin(path):  # as mmengine saves a checkpoint
        torch.save({'meta': {'epoch': 300},
                    'state_dict': mmpretrain_swin_t().state_dict()}, path)

    def timm_swin(path):
        torch.save(timm_swin_t().state_dict(), path)

    def san_19(path):
        save_as_san_does(
            san_state_dict(layers=(3, 3, 4, 6, 3), kernels=(3, 7, 7, 7, 7)),
            path)

    return {
        'swin_acmix_t.pth': (copy_official, 'swin_acmix_official'),
        'swin_tiny_224_b16x64_300e_imagenet_20210616_090925-66df6be6.pth':
        (mmpretrain_swin, 'swin_mmpretrain'),
        'swin_tiny_patch4_window7_224_timm.pth': (timm_swin, 'swin_timm'),
        'san19_patchwise.pth': (san_19, 'san_official'),
    }


def test_converter_commands(reference_dir, tmp_path):
    """Each source in a fresh checkout (the README's command too, where the
    README still has it); ``--force`` replaces a stale destination; the
    report the page shows is the one printed."""
    commands = [c for c in doc_commands() if 'acmix_official.py' in c]
    readme = [line for line in (REPO_ROOT / 'README.md').read_text()
              .splitlines() if 'acmix_official.py swin_acmix_t.pth' in line]
    assert set(readme) <= set(commands)
    stand_ins = _stand_ins(reference_dir)
    reports = []
    for i, command in enumerate(commands):
        src, dst = command.split()[2:4]
        write, layout = stand_ins[src]
        workspace = checkout_like(tmp_path / f'checkout{i}')
        write(workspace / src)
        if '--force' in command:
            (workspace / dst).parent.mkdir()
            (workspace / dst).write_bytes(b'stale')
        proc = run(command, workspace)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert torch.load(workspace / dst)['meta']['layout'] == layout
        reports.append(proc.stdout.splitlines()[-1])
    assert sorted(stand_ins) == sorted({c.split()[2] for c in commands})
    assert any('--force' in c for c in commands)
    shown = re.findall(r'```text\n(loaded .*)\n```', DOC.read_text())
    assert shown and set(shown) <= set(reports)


@pytest.mark.slow
def test_training_commands(toy_workspace, tmp_path):
    """In order: a new run (nothing to resume), resuming the finished run,
    resuming from its second epoch."""
    workspace = checkout_like(tmp_path / 'checkout', toy_workspace / 'data')
    for command in [c for c in doc_commands() if 'tools/train.py' in c]:
        proc = run(command, workspace)
        assert proc.returncode == 0, proc.stderr[-3000:]
    work_dir = workspace / 'work_dirs' / 'swin_acmix_toy_in1k'
    last = (work_dir / 'last_checkpoint').read_text()
    assert last == str(work_dir / 'epoch_3.pth')
    assert torch.load(last)['meta']['epoch'] == 3
