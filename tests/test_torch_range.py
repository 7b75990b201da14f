"""The supported torch range: declared once (mmacmix/version.py), used by
setup.py, checked at the call sites of newer torch features."""
import runpy
import setuptools

import pytest
import torch

from mmacmix.deployment import export
from mmacmix.layers import exporting
from mmacmix.utils.torch_version import (TorchVersionError, format_version,
                                         parse_version, require_torch)
from mmacmix.version import TORCH_MIN

from helpers import REPO_ROOT


def test_setup_declares_the_lower_bound(monkeypatch):
    declared = {}
    monkeypatch.setattr(setuptools, 'setup', declared.update)
    monkeypatch.chdir(REPO_ROOT)
    runpy.run_path(str(REPO_ROOT / 'setup.py'), run_name='__main__')
    torch_reqs = [r for r in declared['install_requires']
                  if r.startswith('torch')]
    assert torch_reqs == [f'torch>={format_version(TORCH_MIN)}']


def test_installed_torch_is_in_range():
    assert parse_version(torch.__version__) >= TORCH_MIN
    require_torch('mmacmix')  # the installed torch passes its own check


@pytest.mark.parametrize('version, parsed', [
    ('2.13.0+cpu', (2, 13)), ('2.11.0+cu128', (2, 11)),
    ('2.8.0a0+gitabc', (2, 8)), ('10.0', (10, 0))])
def test_parse_version(version, parsed):
    assert parse_version(version) == parsed


def test_error_names_feature_and_versions():
    with pytest.raises(TorchVersionError) as info:
        require_torch('the frobnicator', (2, 8), installed='2.7.1+cu126')
    message = str(info.value)
    assert 'the frobnicator' in message
    assert 'torch>=2.8' in message
    assert '2.7.1+cu126' in message
    assert f'torch>={format_version(TORCH_MIN)}' in message
    # minor versions compare as numbers, not strings
    require_torch('the frobnicator', (2, 8), installed='2.13.0')
    with pytest.raises(TorchVersionError):
        require_torch('mmacmix', installed='2.3.1')


def test_this_torch_has_what_the_export_needs():
    # feature detection in _symbolic_sizes agrees with the version it names
    has = hasattr(torch.fx.experimental._config, 'backed_size_oblivious')
    assert has or parse_version(torch.__version__) < \
        export.SIZE_OBLIVIOUS_TORCH
    if parse_version(torch.__version__) >= export.SIZE_OBLIVIOUS_TORCH:
        assert has
        with export._symbolic_sizes():
            assert torch.fx.experimental._config.backed_size_oblivious


def test_is_exporting_fallback_agrees_outside_export():
    # the fallback for a torch without torch.compiler.is_exporting gives
    # the primary's answer in eager code, under torch.compile and under
    # the JIT tracer (the FLOPs counter's), where both must be False
    primary = torch.compiler.is_exporting
    fallback = exporting._not_exporting
    assert exporting._is_torch_exporting is primary  # this torch has it
    assert primary() == fallback() is False

    seen = []

    def record(x):
        seen.append((primary(), fallback()))
        return x + 1

    torch.jit.trace(record, torch.zeros(1))
    torch.compile(record, backend='eager')(torch.zeros(1))
    assert seen and all(p == f is False for p, f in seen)
