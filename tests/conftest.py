import os
from pathlib import Path

import pytest

from mmacmix.utils import toy_data

REPO_ROOT = Path(__file__).resolve().parents[1]


def pytest_configure(config):
    config.addinivalue_line(
        'markers', 'slow: long end-to-end runs, excluded by default (-m slow)')


@pytest.fixture(scope='session')
def reference_dir() -> Path:
    """Reference data from the authors' code (../shared/reference).

    It is part of the project's contract, so its absence is a failure, not a
    skip. MMACMIX_REFERENCE overrides the location.
    """
    path = Path(os.environ.get('MMACMIX_REFERENCE',
                               REPO_ROOT.parent / 'shared' / 'reference'))
    path = path / 'acmix_official'
    if not path.is_dir():
        pytest.fail(f'reference data not found at {path}')
    return path


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
