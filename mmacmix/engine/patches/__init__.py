"""Every change mmacmix makes to an upstream library, one module per
library, applied in place by :func:`apply` (nothing in site-packages is
edited). Each module's header says what it replaces, why, for which
versions, and when it can be deleted.

``import mmacmix`` applies them, which is why a script imports ``mmacmix``
before anything that imports torchvision or builds a runner (configs do
through ``custom_imports``); the tools of ``tools/`` all do.
"""
from . import torchvision

_applied = False


def apply() -> None:
    """Apply every patch, once per process."""
    global _applied
    if _applied:
        return
    torchvision.apply()
    # only now: importing mmengine's runner may import torchvision
    from . import mmcv, mmengine, torch
    torch.apply()
    mmengine.apply()
    mmcv.apply()
    _applied = True
