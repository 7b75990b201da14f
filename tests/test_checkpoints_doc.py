"""Every shell command of docs/checkpoints.md, run as written in a folder
laid out like a fresh checkout (no checkpoints/, no work_dirs/): the
converter's on the official mini checkpoint (standing in for
swin_acmix_t.pth), the training ones on the toy data."""
import re
import shutil
import subprocess

import pytest
import torch

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


def test_converter_commands(reference_dir, tmp_path):
    """The README's command too, where the README still has it."""
    commands = [c for c in doc_commands() if 'acmix_official.py' in c]
    readme = [line for line in (REPO_ROOT / 'README.md').read_text()
              .splitlines() if 'acmix_official.py swin_acmix_t.pth' in line]
    assert set(readme) <= set(commands)
    workspace = checkout_like(tmp_path / 'checkout')
    shutil.copy(reference_dir / 'swin_acmix_mini_official_ckpt.pth',
                workspace / 'swin_acmix_t.pth')
    dst = workspace / 'checkpoints' / 'swin_acmix_t_in1k.pth'
    first, force = commands
    proc = run(first, workspace)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert torch.load(dst)['meta']['layout'] == 'swin_acmix_official'
    dst.write_bytes(b'stale')
    proc = run(force, workspace)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert torch.load(dst)['meta']['layout'] == 'swin_acmix_official'


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
