"""ACmix (Pan et al., CVPR 2022) backbones for OpenMMLab.

``mmacmix.layers`` needs torch alone. When mmengine is installed, importing
``mmacmix`` also applies :mod:`mmacmix.engine.patches` and registers the
backbones in mmengine's root ``MODELS``, so mmdet, mmseg and mmpretrain
configs can all build them.
"""
from importlib.util import find_spec

from .version import __version__

if find_spec('mmengine') is not None:
    from .engine import patches

    patches.apply()  # before anything below can import torchvision
    from . import models  # noqa: F401  (registers the backbones)

__all__ = ['__version__']
