import importlib.util
import os
import subprocess
from pathlib import Path

import pytest

from mmacmix.datasets import toy_data

REPO_ROOT = Path(__file__).resolve().parents[1]


def pytest_configure(config):
    config.addinivalue_line(
        'markers', 'slow: long end-to-end runs, left out by default (the '
        "addopts of pyproject.toml); -m slow runs them")
    config.addinivalue_line(
        'markers', 'cuda: needs a CUDA device (skipped without one); '
        '-m cuda selects them, .dev_scripts/device_check.sh runs them')
    config.addinivalue_line(
        'markers', 'compiled_mmcv: needs mmcv built with its ops '
        '(tools/setup_env.sh --full-mmcv), left out by default; '
        '-m compiled_mmcv runs them')


@pytest.fixture(autouse=True)
def _compiled_mmcv_present(request):
    """A ``compiled_mmcv`` test, when selected, fails without compiled
    mmcv instead of skipping."""
    if request.node.get_closest_marker('compiled_mmcv') and not any(
            Path(importlib.util.find_spec('mmcv').origin).parent.glob(
                '_ext*.so')):
        pytest.fail('-m compiled_mmcv: mmcv is not built with its ops '
                    '(bash tools/setup_env.sh --full-mmcv)')


def _reference_candidates():
    """Where the reference data may be: $MMACMIX_REFERENCE, else
    ``../shared/reference`` beside this checkout or, for a clone of a local
    checkout (``git clone /work/main /tmp/fresh``), beside that one."""
    if 'MMACMIX_REFERENCE' in os.environ:
        yield Path(os.environ['MMACMIX_REFERENCE'])
        return
    yield REPO_ROOT.parent / 'shared' / 'reference'
    origin = subprocess.run(
        ['git', '-C', str(REPO_ROOT), 'config', '--get', 'remote.origin.url'],
        capture_output=True, text=True).stdout.strip()
    if origin and Path(origin).is_dir():
        yield Path(origin).resolve().parent / 'shared' / 'reference'


@pytest.fixture(scope='session')
def reference_dir() -> Path:
    """Reference data from the authors' code (../shared/reference).

    It is part of the project's contract, so its absence is a failure, not a
    skip.
    """
    tried = []
    for candidate in _reference_candidates():
        path = candidate / 'acmix_official'
        if path.is_dir():
            return path
        tried.append(str(path))
    pytest.fail(f'reference data not found at {" or ".join(tried)}')


@pytest.fixture(scope='session')
def toy_workspace(tmp_path_factory) -> Path:
    """A folder holding small toy datasets under data/toy, where the configs
    in configs/toy expect them: the working directory of tool runs."""
    workspace = tmp_path_factory.mktemp('workspace')
    root = workspace / 'data' / 'toy'
    toy_data.make_coco(root / 'coco', num_train=16, num_val=4)
    toy_data.make_ade20k(root / 'ade', num_train=8, num_val=4)
    toy_data.make_imagenet(root / 'imagenet', num_train=24, num_val=9)
    return workspace


@pytest.fixture(scope='session')
def toy_root(toy_workspace) -> Path:
    return toy_workspace / 'data' / 'toy'
