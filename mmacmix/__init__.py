"""ACmix (Pan et al., CVPR 2022) backbones for OpenMMLab.

``mmacmix.layers`` needs torch alone. When mmengine is installed, importing
``mmacmix`` also installs the finder of :mod:`mmacmix_mmcv_lite` (mmcv's
compiled ops from :mod:`mmacmix.ops` where mmcv has none), applies
:mod:`mmacmix.engine.patches` and registers the backbones in mmengine's
root ``MODELS``, so mmdet, mmseg and mmpretrain configs can all build
them.
"""
from importlib.util import find_spec

from .utils.torch_version import require_torch
from .version import __version__

# an older torch lacks APIs used below: say so before they fail
require_torch('mmacmix')

if find_spec('mmengine') is not None:
    # mmcv-lite's ops also where site-packages' mmacmix_mmcv_lite.pth did not
    # run: this checkout on PYTHONPATH (as tools/dist_train.sh puts it), or
    # mmacmix installed with `pip install --target`
    import mmacmix_mmcv_lite
    mmacmix_mmcv_lite.install()
    from .engine import patches

    patches.apply()  # before anything below can import torchvision
    from . import models  # noqa: F401  (registers the backbones)

__all__ = ['__version__']
