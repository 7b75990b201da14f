"""Which Python the shell launchers (tools/dist_*.sh, tools/slurm_*.sh)
run: PYTHON if set, else an active environment's ``python``, else the
checkout's .venv when it exists, else ``python`` from PATH. Each launcher
runs in a copy of tools/ inside a scratch checkout whose interpreters are
stand-ins that record how they were called."""
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from helpers import TOOLS

# launcher -> its arguments and the script it must hand to Python
LAUNCHERS = {
    'dist_train.sh': (['a_config.py', '2'], 'train.py'),
    'dist_test.sh': (['a_config.py', 'a.pth', '2'], 'test.py'),
    'slurm_train.sh': (['part', 'job', 'a_config.py', 'wd'], 'train.py'),
    'slurm_test.sh': (['part', 'job', 'a_config.py', 'a.pth'], 'test.py'),
}
# srun stand-in: drop srun's own options, run the command
SRUN = '''#!/bin/sh
while [ $# -gt 0 ]; do
    case "$1" in -p) shift 2;; -*) shift;; *) break;; esac
done
exec "$@"
'''


def executable(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def recorder(path: Path, label: str, log: Path) -> Path:
    """An interpreter stand-in that writes ``label args...`` to ``log``."""
    return executable(path, f'#!/bin/sh\necho "{label} $*" >> "{log}"\n')


@pytest.fixture
def checkout(tmp_path):
    root = tmp_path / 'checkout'
    (root / 'tools').mkdir(parents=True)
    for name in [*LAUNCHERS, 'find_python.sh']:
        shutil.copy(TOOLS / name, root / 'tools' / name)
    log = tmp_path / 'calls.log'
    recorder(root / '.venv' / 'bin' / 'python', 'venv', log)
    bin_dir = tmp_path / 'bin'
    recorder(bin_dir / 'python', 'path', log)
    recorder(tmp_path / 'explicit_python', 'explicit', log)
    executable(bin_dir / 'srun', SRUN)
    return root, bin_dir, log


def launch(checkout, launcher, **env):
    root, bin_dir, log = checkout
    args, _ = LAUNCHERS[launcher]
    # a fresh shell: nothing of this process's environment leaks in
    base = dict(PATH=f'{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin',
                HOME=os.environ.get('HOME', '/tmp'))
    subprocess.run(['bash', str(root / 'tools' / launcher), *args],
                   env={**base, **env}, check=True, timeout=60)
    return log.read_text().split()


@pytest.mark.parametrize('launcher', LAUNCHERS)
def test_fresh_shell_uses_the_checkout_venv(checkout, launcher):
    called = launch(checkout, launcher)
    assert called[0] == 'venv'
    script = LAUNCHERS[launcher][1]
    assert any(arg.endswith(f'tools/{script}') for arg in called)
    assert 'a_config.py' in called


@pytest.mark.parametrize('launcher', LAUNCHERS)
@pytest.mark.parametrize('active', ['VIRTUAL_ENV', 'CONDA_PREFIX'])
def test_active_environment_wins_over_venv(checkout, launcher, active):
    assert launch(checkout, launcher, **{active: '/some/env'})[0] == 'path'


@pytest.mark.parametrize('launcher', LAUNCHERS)
def test_explicit_python_wins(checkout, launcher):
    explicit = checkout[2].parent / 'explicit_python'
    called = launch(checkout, launcher, PYTHON=str(explicit),
                    VIRTUAL_ENV='/some/env')
    assert called[0] == 'explicit'


@pytest.mark.parametrize('launcher', LAUNCHERS)
def test_no_venv_falls_back_to_path(checkout, launcher):
    shutil.rmtree(checkout[0] / '.venv')
    assert launch(checkout, launcher)[0] == 'path'
