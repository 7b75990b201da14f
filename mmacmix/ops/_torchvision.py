"""torchvision's compiled kernels, for CUDA tensors where they load."""
import functools

import torch


@functools.lru_cache(maxsize=None)
def _load():
    try:
        import torchvision  # noqa: F401  (registers torch.ops.torchvision)
        ops = torch.ops.torchvision
        ops.nms, ops.roi_align  # raise where its C++ ops did not load
    except (ImportError, OSError, RuntimeError, AttributeError):
        return None
    return ops


def torchvision_ops(tensor):
    """``torch.ops.torchvision`` if ``tensor`` is on a CUDA device and
    torchvision's kernels load there, else None (the PyTorch code runs).
    CPU tensors always take the PyTorch code: it is the one that matches
    mmcv's CPU kernels bit for bit."""
    if tensor.device.type != 'cuda':
        return None
    return _load()
