"""mmcv's compiled ops in PyTorch, for mmcv-lite installs.

mmcv-lite ships mmcv's Python code without its compiled extension
``mmcv._ext``, so every ``mmcv.ops`` module fails at import and, with it,
mmdet's detectors and mmseg's and mmpretrain's models that use them. This
package stands in for that extension: it has every function mmcv 2.1.0's
ops ask ``mmcv._ext`` for. Those mmdet, mmseg and mmpretrain models call
work as compiled mmcv's do: ``nms``, ``softnms``, ``roi_align_forward`` /
``roi_align_backward``, ``sigmoid_focal_loss_forward`` / ``_backward``,
``ms_deform_attn_forward`` / ``_backward`` and the two version queries.
Any other function raises :class:`CompiledOpMissing` when called, naming
the op and how to install mmcv with its ops.

It needs torch alone and uses torchvision's kernels for CUDA tensors where
they load. ``mmacmix_mmcv_lite`` (installed with mmacmix) makes it
``mmcv._ext`` where compiled mmcv is absent; the functions can also be
called from here directly.
"""
from .deform_attn import ms_deform_attn_backward, ms_deform_attn_forward
from .focal_loss import sigmoid_focal_loss_backward, sigmoid_focal_loss_forward
from .missing import MMCV_EXT_NAMES, CompiledOpMissing, missing_op
from .nms import nms, softnms
from .roi_align import roi_align_backward, roi_align_forward


def get_compiler_version():
    """What ``mmcv.ops.get_compiler_version`` reports (``collect_env``):
    no compiler built these ops."""
    return 'none (mmacmix.ops: PyTorch)'


def get_compiling_cuda_version():
    """What a CPU build of mmcv reports: these ops were built with no
    CUDA."""
    return 'not available'


IMPLEMENTED = ('nms', 'softnms', 'roi_align_forward', 'roi_align_backward',
               'sigmoid_focal_loss_forward', 'sigmoid_focal_loss_backward',
               'ms_deform_attn_forward', 'ms_deform_attn_backward',
               'get_compiler_version', 'get_compiling_cuda_version')


def __getattr__(name):
    # mmcv's ops look their functions up at import (ext_loader.load_ext):
    # the ones not implemented exist too, and raise only when called
    if name in MMCV_EXT_NAMES:
        return missing_op(name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


def __dir__():
    return sorted(set(globals()) | set(MMCV_EXT_NAMES))


__all__ = [
    'CompiledOpMissing', 'IMPLEMENTED', 'MMCV_EXT_NAMES', 'nms', 'softnms',
    'roi_align_forward', 'roi_align_backward', 'sigmoid_focal_loss_forward',
    'sigmoid_focal_loss_backward', 'ms_deform_attn_forward',
    'ms_deform_attn_backward', 'get_compiler_version',
    'get_compiling_cuda_version'
]
