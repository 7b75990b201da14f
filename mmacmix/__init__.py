"""ACmix (Pan et al., CVPR 2022) backbones for OpenMMLab.

``mmacmix.layers`` needs torch alone. When mmengine is installed, importing
``mmacmix`` also registers the backbones in mmengine's root ``MODELS`` (so
mmdet, mmseg and mmpretrain configs can all build them) and applies the
compatibility fixes in :mod:`mmacmix.utils.compat`.
"""
from importlib.util import find_spec

from .version import __version__

if find_spec('mmengine') is not None:
    # before anything below can import torchvision
    from .utils.torchvision_compat import make_torchvision_importable
    make_torchvision_importable()

    from . import models  # noqa: F401  (registers the backbones)
    from .utils import compat

    compat.apply()

__all__ = ['__version__']
