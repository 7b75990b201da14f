"""mmcv: its compiled ops under bf16 and fp16 autocast.

Replaces: ``forward``/``backward`` of mmcv's autograd functions ``NMSop``,
``RoIAlignFunction`` and ``SigmoidFocalLossFunction`` (every caller
reaches them, whatever it bound at import), and ``batched_nms`` in every
module that bound it, with wrappers that run bf16 or fp16 inputs in
float32 (on any device) and give the caller what it expects: RoIAlign's
features and their gradient in the input's dtype, NMS indices (``nms``
then gathers the caller's own boxes and scores), the focal loss in float32
like any loss under autocast. Float32 and float64 inputs reach mmcv's code
unchanged.

Why: mmcv 2.1 has no bf16 kernel for ``nms`` (on the CPU it reads float32
boxes only), ``RoIAlign`` or ``sigmoid_focal_loss``, so a detector under
``torch.autocast(dtype=torch.bfloat16)`` stopped in them; ``batched_nms``
adds its class offsets in the boxes' dtype, and in bf16 they rounded the
boxes of most COCO classes beyond recognition.

Versions: mmcv 2.1.0 built with its ops. Over mmacmix.ops (mmcv-lite,
docs/mmcv_lite.md), which computes low precision in float32 itself, the
wrappers change nothing.
Delete when: mmcv's ops take bf16/fp16 and ``batched_nms`` offsets in
float32.
"""
import functools
import sys
import types

import torch


def apply() -> None:
    try:
        from mmcv.ops.focal_loss import SigmoidFocalLossFunction
        from mmcv.ops.nms import NMSop, batched_nms
        from mmcv.ops.roi_align import RoIAlignFunction
    except ImportError:  # mmcv's ops do not import: nothing to wrap
        return
    # the autograd functions: every caller reaches them, whatever it bound
    # at import (roi_align, RoIAlign, nms, sigmoid_focal_loss)
    NMSop.forward = staticmethod(_nms_in_float32(NMSop.forward))
    for function, cast_back in ((RoIAlignFunction, True),
                                (SigmoidFocalLossFunction, False)):
        function.forward = staticmethod(
            _in_float32(function.forward, cast_back))
        function.backward = staticmethod(
            _backward_in_float32(function.backward))
    # mmdet's modules bind batched_nms at import (from mmcv.ops import
    # batched_nms): those imported already get the wrapper here, later
    # ones from mmcv.ops and mmcv.ops.nms
    wrapper = _batched_nms_in_float32(batched_nms)
    for module in list(sys.modules.values()):
        if (isinstance(module, types.ModuleType)
                and vars(module).get('batched_nms') is batched_nms):
            module.batched_nms = wrapper


def _low_precision(tensor) -> bool:
    return isinstance(tensor, torch.Tensor) and tensor.dtype in (
        torch.float16, torch.bfloat16)


def _float32(arg):
    if isinstance(arg, torch.Tensor) and arg.is_floating_point():
        return arg.float()
    return arg


def _nms_in_float32(forward):
    """NMS of float32 copies of bf16 or fp16 boxes and scores. It returns
    indices: ``nms`` gathers the caller's own boxes and scores with them."""

    @functools.wraps(forward)
    def wrapper(ctx, bboxes, scores, *args):
        if _low_precision(bboxes) or _low_precision(scores):
            bboxes, scores = bboxes.float(), scores.float()
        return forward(ctx, bboxes, scores, *args)

    return wrapper


def _batched_nms_in_float32(batched_nms):
    """``batched_nms`` on float32 boxes and scores when either is bf16 or
    fp16. It separates the classes (or RPN levels) by adding an offset of
    ``class * (max coordinate + 1)`` to the boxes, in their dtype: for 80
    COCO classes at 1333 px that reaches 1e5, where bf16 rounds to 512 px
    and fp16 overflows, and NMS of bf16 boxes of a late class kept most of
    its duplicates. The boxes and scores it returns are the caller's, in
    the dtype mmcv gives them."""

    @functools.wraps(batched_nms)
    def wrapper(boxes, scores, idxs, nms_cfg, class_agnostic=False):
        if not (_low_precision(boxes) or _low_precision(scores)):
            return batched_nms(boxes, scores, idxs, nms_cfg, class_agnostic)
        dets, keep = batched_nms(boxes.float(), scores.float(), idxs,
                                 nms_cfg, class_agnostic)
        return dets.to(torch.promote_types(boxes.dtype, scores.dtype)), keep

    return wrapper


def _in_float32(forward, cast_back):
    """``forward(ctx, input, ...)`` of an mmcv autograd function on float32
    copies of ``input`` and its other floating-point tensors (RoIs, loss
    weights: the kernels read them in the input's type) when ``input`` is
    bf16 or fp16; the output back in the input's dtype if ``cast_back``
    (RoIAlign's features), else float32 (a loss)."""

    @functools.wraps(forward)
    def wrapper(ctx, input, *args):
        if not _low_precision(input):
            return forward(ctx, input, *args)
        ctx.mmacmix_dtype = input.dtype
        output = forward(ctx, input.float(), *map(_float32, args))
        return output.to(input.dtype) if cast_back else output

    return wrapper


def _backward_in_float32(backward):
    """The backward of a function that ``_in_float32`` ran in float32: a
    float32 gradient in, the input's gradient back in the input's dtype."""

    @functools.wraps(backward)
    def wrapper(ctx, grad_output):
        dtype = getattr(ctx, 'mmacmix_dtype', None)
        if dtype is None:
            return backward(ctx, grad_output)
        grad_input, *others = backward(ctx, grad_output.float())
        return (grad_input.to(dtype), *others)

    return wrapper
