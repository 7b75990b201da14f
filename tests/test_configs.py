"""Every config imports mmacmix and follows the naming of the design card."""
import re

import pytest
from mmengine.config import Config

from helpers import REPO_ROOT

CONFIGS = sorted(p for p in (REPO_ROOT / 'configs').rglob('*.py')
                 if '_base_' not in p.parts)
NAME = re.compile(r'(?P<method>[a-z][a-z0-9_]*_)?'
                  r'(?P<backbone>swin|pvt|resnet|san)_acmix_'
                  r'(?P<size>[a-z0-9]+)_((?P<schedule>\w+)_)?'
                  r'(?P<dataset>coco|ade20k|in1k)\.py')


@pytest.mark.parametrize('path', CONFIGS, ids=lambda p: p.name)
def test_config_imports_mmacmix(path):
    text = path.read_text()
    assert ("custom_imports = dict(imports=['mmacmix'], "
            "allow_failed_imports=False)") in text
    cfg = Config.fromfile(path)
    assert cfg.custom_imports == dict(imports=['mmacmix'],
                                      allow_failed_imports=False)


@pytest.mark.parametrize('path', CONFIGS, ids=lambda p: p.name)
def test_config_name(path):
    assert NAME.fullmatch(path.name), path.name
