"""The package's rooms (docs/code_layout.md): every patch of an upstream
library under mmacmix/engine/patches/ with its header, no package module
looking for the checkout, no tool editing sys.path."""
import ast
import re

import pytest

from mmacmix.utils.package_files import config_dir, find_config

from helpers import REPO_ROOT

PACKAGE = REPO_ROOT / 'mmacmix'
PATCHES = sorted((PACKAGE / 'engine' / 'patches').glob('*.py'))
SCRIPTS = sorted([*(REPO_ROOT / 'tools').rglob('*.py'),
                  *(REPO_ROOT / '.dev_scripts').rglob('*.py')])


@pytest.mark.parametrize('path', [p for p in PATCHES
                                  if p.name != '__init__.py'],
                         ids=lambda p: p.name)
def test_every_patch_module_says_what_why_which_versions_and_when_to_go(
        path):
    header = ast.get_docstring(ast.parse(path.read_text()))
    for field in ('Replaces:', 'Why:', 'Versions:', 'Delete when:'):
        assert field in header, f'{path.name}: no {field!r} in its header'


def test_one_patch_module_per_library_applied_in_one_place():
    assert [p.stem for p in PATCHES] == [
        '__init__', 'mmcv', 'mmengine', 'torch', 'torchvision']
    applied = re.findall(r'^    (\w+)\.apply\(\)$',
                         (PACKAGE / 'engine/patches/__init__.py').read_text(),
                         re.M)
    assert sorted(applied) == ['mmcv', 'mmengine', 'torch', 'torchvision']
    # nothing else in the package replaces attributes of those libraries
    for path in PACKAGE.rglob('*.py'):
        if 'patches' in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    root = target
                    while isinstance(root, ast.Attribute):
                        root = root.value
                    assert not (isinstance(target, ast.Attribute)
                                and isinstance(root, ast.Name) and root.id in (
                                    'torch', 'mmengine', 'mmcv', 'mmdet',
                                    'torchvision')), (
                        f'{path}:{node.lineno} patches {root.id}')


def test_utils_holds_few_generic_files():
    files = sorted(p.name for p in (PACKAGE / 'utils').glob('*.py'))
    assert len([f for f in files if f != '__init__.py']) <= 3, files


def test_no_package_module_looks_for_the_checkout():
    """Paths are built from the package's own folder only, and only
    package_files reaches the installed files beside it."""
    for path in PACKAGE.rglob('*.py'):
        text = path.read_text()
        assert not re.search(r"parents\[[1-9]\]|'\.\.'", text), path
        if path.name != 'package_files.py':
            assert '.mim' not in text, path


def test_no_tool_edits_sys_path():
    for path in SCRIPTS:
        assert 'sys.path' not in path.read_text(), path


def test_installed_configs_are_found_by_name_or_path(tmp_path,
                                                     monkeypatch):
    monkeypatch.chdir(tmp_path)  # outside the checkout
    by_name = find_config('swin_acmix_toy_in1k.py')
    assert by_name == str(config_dir() / 'toy' / 'swin_acmix_toy_in1k.py')
    assert find_config('configs/toy/swin_acmix_toy_in1k.py') == by_name
    assert find_config('no_such_config.py') == 'no_such_config.py'
    # names of several configs (every _base_ folder has a default_runtime?)
    local = tmp_path / 'swin_acmix_toy_in1k.py'
    local.write_text('')
    assert find_config('swin_acmix_toy_in1k.py') == 'swin_acmix_toy_in1k.py'
