"""The wheel and the sdist: `python -m build` makes both; the wheel carries
configs/, tools/ and the model index under mmacmix/.mim/ (what `mim`
reads); installed into a fresh venv, without the checkout, it trains, tests
and lists the toy and paper models through `mim`; the sdist installs too.

The fresh venvs see the test environment's packages through a .pth file
naming its site-packages: .pth files inside a folder added that way are not
processed, so the editable install of the checkout stays off and
``import mmacmix`` finds the wheel (checked)."""
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest
import yaml

from helpers import REPO_ROOT, printed_metrics, tool_env

MIM_DIRS = ('configs', 'tools')
MIM_SUFFIXES = ('.py', '.sh', '.yml', '.json')


def run(cmd, **kwargs):
    shell = isinstance(cmd, str)
    proc = subprocess.run(cmd if shell else [str(c) for c in cmd],
                          shell=shell, executable='/bin/bash' if shell else
                          None, capture_output=True, text=True, timeout=900,
                          **kwargs)
    if proc.returncode != 0:
        raise AssertionError(
            f'{cmd if shell else " ".join(map(str, cmd))} exited '
            f'{proc.returncode}\n--- stdout ---\n{proc.stdout[-4000:]}\n'
            f'--- stderr ---\n{proc.stderr[-6000:]}')
    return proc


def doc_commands(prefix):
    """The commands of docs/mim.md's bash blocks that start with
    ``prefix``, in order: the tests run them as written."""
    text = (REPO_ROOT / 'docs' / 'mim.md').read_text()
    lines = [line.strip() for block in re.findall(r'```bash\n(.*?)```',
                                                  text, re.S)
             for line in block.splitlines()]
    return [line for line in lines if line.startswith(prefix)]


@pytest.fixture(scope='module')
def checkout(tmp_path_factory, toy_root):
    """A copy of the checkout (what a clone holds) with the toy data."""
    copy = tmp_path_factory.mktemp('clone') / 'mmacmix'
    shutil.copytree(REPO_ROOT, copy, ignore=shutil.ignore_patterns(
        '.git', '.venv', '.mim', 'work_dirs', 'data', 'build', 'dist',
        '__pycache__', '*.egg-info', 'checkpoints', '.pytest_cache'))
    (copy / 'data').symlink_to(toy_root.parent)
    return copy


@pytest.fixture(scope='module')
def dists(checkout):
    """``(wheel, sdist)`` as docs/mim.md builds them: the sdist from the
    checkout, the wheel from the sdist, offline with this environment's
    setuptools."""
    (build, ) = doc_commands('python -m build')
    run(build, cwd=checkout, env=tool_env())
    (wheel, ), (sdist, ) = (checkout / 'dist').glob('*.whl'), (
        checkout / 'dist').glob('*.tar.gz')
    return wheel, sdist


def mim_files():
    """What the wheel must hold under mmacmix/.mim/."""
    files = {'model-index.yml'}
    for folder in MIM_DIRS:
        files.update(
            str(p.relative_to(REPO_ROOT)) for p in (REPO_ROOT / folder)
            .rglob('*') if p.suffix in MIM_SUFFIXES
            and '__pycache__' not in p.parts)
    return files


def test_wheel_holds_configs_tools_and_model_index(dists):
    with zipfile.ZipFile(dists[0]) as wheel:
        names = wheel.namelist()
        index = yaml.safe_load(wheel.read('mmacmix/.mim/model-index.yml'))
    prefix = 'mmacmix/.mim/'
    held = {n[len(prefix):] for n in names if n.startswith(prefix)}
    assert held == mim_files()
    # the metafiles the index imports are there, toy configs and bases too
    assert set(index['Import']) <= held
    assert {'configs/toy/swin_acmix_toy_in1k.py',
            'configs/toy/_base_/toy_coco.py',
            'configs/_base_/models/swin_acmix_t_cls.py',
            'tools/train.py', 'tools/dist_train.sh'} <= held
    assert 'mmacmix/layers/acmix.py' in names


def test_sdist_holds_what_setup_py_reads(dists):
    with tarfile.open(dists[1]) as sdist:
        root = sdist.getnames()[0].split('/')[0]
        names = {n[len(root) + 1:] for n in sdist.getnames()}
    assert {'setup.py', 'pyproject.toml', 'MANIFEST.in', 'README.md',
            'LICENSE', 'CITATION.cff', 'CHANGELOG.md', 'model-index.yml',
            'requirements/runtime.txt', 'requirements/optional.txt',
            'requirements/tests.txt', 'mmacmix/version.py'} <= names
    assert mim_files() <= names


def fresh_venv(path: Path) -> dict:
    """A venv without pip that also sees this environment's packages, and
    the environment of a fresh shell in it: its ``pip`` installs into it,
    its ``mim`` runs in it, nothing points at the checkout."""
    run([sys.executable, '-m', 'venv', '--without-pip', path])
    python = path / 'bin' / 'python'
    site = run([python, '-c', 'import sysconfig; '
                'print(sysconfig.get_paths()["purelib"])']).stdout.strip()
    shared = sysconfig.get_paths()['purelib']
    Path(site, 'test_environment.pth').write_text(shared + '\n')
    # pip runs from this environment; --ignore-installed: the checkout's
    # editable mmacmix, visible through the .pth, is neither "already
    # satisfied" nor uninstalled
    script(path / 'bin' / 'pip',
           f'#!/bin/sh\nexec "{sys.executable}" -m pip --python "{python}" '
           '"$@" --no-index --ignore-installed --disable-pip-version-check\n')
    # what openmim's console script does, with this venv's python
    script(path / 'bin' / 'mim', f'#!{python}\nimport sys\n'
           'from mim.cli import cli\nsys.exit(cli())\n')
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    env.update(PATH=os.pathsep.join([str(python.parent), env['PATH']]),
               VIRTUAL_ENV=str(path))
    env.setdefault('OMP_NUM_THREADS', '1')
    return env


def script(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o755)


def installed_mmacmix(env, cwd) -> Path:
    """Where ``python`` in ``env`` imports mmacmix from."""
    proc = run('python -c "import mmacmix; print(mmacmix.__file__)"',
               env=env, cwd=cwd)
    return Path(proc.stdout.strip()).parent


def metafile_models() -> dict:
    models = {}
    for metafile in (REPO_ROOT / 'configs' / 'metafiles').glob('*.yml'):
        for model in yaml.safe_load(metafile.read_text())['Models']:
            models[model['Name']] = model
    return models


@pytest.mark.slow
def test_mim_train_test_search_from_the_wheel(dists, checkout, toy_root,
                                              tmp_path):
    venv = tmp_path / 'venv'
    env = fresh_venv(venv)
    (install, ) = [c for c in doc_commands('pip install') if '.whl' in c]
    run(install, env=env, cwd=checkout)
    # a folder outside any checkout, holding the data
    folder = tmp_path / 'job'
    folder.mkdir()
    (folder / 'data').symlink_to(toy_root.parent)
    package = installed_mmacmix(env, folder)
    assert package.parent.parent.parent.parent == venv  # lib/python3.X/...
    assert (package / '.mim' / 'model-index.yml').is_file()

    train, test, search, flops = doc_commands('mim ')
    proc = run(train, env=env, cwd=folder)
    assert str(package / '.mim' / 'tools' / 'train.py') in proc.stdout
    assert (folder / 'work_dirs/swin_acmix_toy_in1k/epoch_1.pth').is_file()
    proc = run(test, env=env, cwd=folder)
    assert 0 <= printed_metrics(proc)['accuracy/top1'] <= 100

    # a tool of the wheel on an installed config, named as mim names it
    proc = run(flops, env=env, cwd=folder)
    assert str(package / '.mim' / 'tools' / 'analysis_tools' /
               'get_flops.py') in proc.stdout
    (row, ) = [line.split() for line in proc.stdout.splitlines()
               if line.startswith('swin_acmix_t_in1k.py')]
    swin_t = metafile_models()['swin_acmix_t_in1k']['Metadata']
    assert row[1:4] == ['224x224', f'{swin_t["Parameters"] / 1e6:.2f}',
                        f'{swin_t["FLOPs"] / 1e9:.2f}']

    proc = run(search, env=env, cwd=folder)
    models = metafile_models()
    listed = re.findall(r'config id: (\S+)', proc.stdout)
    assert sorted(listed) == sorted(models)
    out = tmp_path / 'models.json'
    run(f'mim search mmacmix --json {out}', env=env, cwd=folder)
    # mim writes one column per field, model name -> value
    columns = json.loads(out.read_text())
    for name, model in models.items():
        assert columns['parameters'][name] == model['Metadata']['Parameters']
        assert columns['config'][name] == model['Config']
        assert columns['weight'].get(name) == model.get('Weights')


@pytest.mark.slow
def test_sdist_installs(dists, checkout, tmp_path):
    venv = tmp_path / 'venv'
    env = fresh_venv(venv)
    (install, ) = [c for c in doc_commands('pip install') if '.tar.gz' in c]
    run(install, env=env, cwd=checkout)
    package = installed_mmacmix(env, tmp_path)
    assert package.parent.parent.parent.parent == venv
    mim_dir = package / '.mim'
    assert {str(p.relative_to(mim_dir)) for p in mim_dir.rglob('*')
            if p.is_file() and '__pycache__' not in p.parts} == mim_files()


@pytest.mark.slow
def test_documented_tool_commands(checkout):
    """docs/mim.md's tool, metafile and lint commands, in a clone."""
    commands = doc_commands('python ')
    assert len(commands) == 6
    for command in commands:
        if not command.startswith('python -m build'):
            run(command, cwd=checkout, env=tool_env())
    work_dir = checkout / 'work_dirs' / 'swin_acmix_toy_in1k'
    assert list(work_dir.glob('*/vis_data/events.out.tfevents.*'))
    assert len(list((work_dir / 'shown').glob('*.png'))) == 9
