"""Make :mod:`mmacmix.ops` mmcv's ``mmcv._ext`` where mmcv has none.

mmcv-lite has mmcv's Python code but not its compiled extension
``mmcv._ext``, which every ``mmcv.ops`` module imports. The
``mmacmix_mmcv_lite.pth`` file that installing mmacmix puts in
site-packages (editable or from a wheel) calls :func:`install` at
interpreter start, so a plain script that never imports mmacmix gets the
PyTorch ops too; ``import mmacmix`` calls it as well, for where that file
does not run (mmacmix found through PYTHONPATH or a ``pip install
--target`` folder). :func:`install` only appends a finder to
``sys.meta_path``: nothing is imported (not torch, not mmacmix) until
``mmcv._ext`` itself is imported, and the finder answers only when no other
finder has it, so a compiled mmcv is used as it is. Then ``mmacmix/ops``
is loaded as the package ``mmcv._ext`` straight from its files: ``import
mmacmix`` (which imports mmengine and mmcv's ops) would be circular there.

This module needs the standard library alone.
"""
import importlib.util
import os
import sys

EXT_NAME = 'mmcv._ext'


class MmcvExtFinder:
    """A ``sys.meta_path`` finder for ``mmcv._ext`` alone, consulted
    last: the PyTorch ops when no other finder has compiled ones."""

    @classmethod
    def find_spec(cls, fullname, path=None, target=None):
        if fullname != EXT_NAME or _found_elsewhere(fullname, path, target):
            return None
        init = ops_init_file()
        if init is None:
            return None
        return importlib.util.spec_from_file_location(
            fullname, init, submodule_search_locations=[os.path.dirname(init)])


def _found_elsewhere(fullname, path, target):
    """Whether another finder has ``fullname``: also those appended after
    this one (by a later .pth file, say), which Python would ask after."""
    for finder in sys.meta_path:
        if finder is MmcvExtFinder or not hasattr(finder, 'find_spec'):
            continue
        if finder.find_spec(fullname, path, target) is not None:
            return True
    return False


def ops_init_file():
    """``mmacmix/ops/__init__.py`` of the mmacmix that ``import mmacmix``
    would load (found without importing it), or None."""
    spec = importlib.util.find_spec('mmacmix')
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        init = os.path.join(folder, 'ops', '__init__.py')
        if os.path.isfile(init):
            return init
    return None


def install():
    """Append :class:`MmcvExtFinder` to ``sys.meta_path`` (once)."""
    if MmcvExtFinder not in sys.meta_path:
        sys.meta_path.append(MmcvExtFinder)
