"""ACmix (Pan et al., CVPR 2022) backbones for OpenMMLab.

``mmacmix.layers`` needs torch alone. When mmengine is installed, importing
``mmacmix`` also applies :mod:`mmacmix.engine.patches` and registers the
backbones in mmengine's root ``MODELS``, so mmdet, mmseg and mmpretrain
configs can all build them.
"""
from importlib.util import find_spec

from .utils.torch_version import require_torch
from .version import __version__

# an older torch lacks APIs used below: say so before they fail
require_torch('mmacmix')

if find_spec('mmengine') is not None:
    from .engine import patches

    patches.apply()  # before anything below can import torchvision
    from . import models  # noqa: F401  (registers the backbones)

__all__ = ['__version__']
