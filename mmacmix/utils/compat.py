"""Fixes that let mmengine 0.10.7 run on today's PyTorch and on CPU-only
machines, and mmcv 2.1's ops under bf16 autocast, applied at runtime when
``mmacmix`` is imported (every config imports it through
``custom_imports``). Nothing in site-packages is edited, and on GPUs
mmengine's own code paths run unchanged.

1. Checkpoints (see :mod:`mmacmix.utils.checkpoint`): every loader of
   mmengine's ``CheckpointLoader``, registered now or later, is wrapped when
   it is looked up so that it cannot unpickle code (http(s) goes through
   ``torch.hub``, which asks for ``weights_only=False``); the classes
   mmengine's own checkpoints need are allowlisted. The message hub's
   ``HistoryBuffer`` pickles as its constructor arguments: its default
   pickle also stores its statistics functions, which only
   ``builtins.getattr`` could restore, and allowing ``getattr`` would let a
   file reach far beyond the allowlist. State dicts loaded by the runner
   (``load_from``, ``Pretrained`` init) must fit the model: mostly when
   training, entirely when testing, unless the config sets
   ``allow_partial_load = True``.
2. Distributed on CPU: mmengine's ``init_dist`` calls
   ``torch.cuda.set_device`` and asks for NCCL, and its DDP wrapper always
   passes ``device_ids``. Without CUDA we use gloo and drop ``device_ids``.
3. Crash-safe checkpoints: mmengine writes a checkpoint in place, deletes
   the outdated ones (``max_keep_ckpts``) before the new one is complete
   and rewrites ``last_checkpoint`` in place, so a kill mid-save can lose
   every checkpoint. :func:`mmacmix.utils.saving.install_crash_safe_saving`
   writes both atomically, and deletes only afterwards.
4. bf16 autocast through mmcv's compiled ops: mmcv 2.1 has no bf16
   kernel for ``nms`` (on the CPU it reads float32 boxes only),
   ``RoIAlign`` or ``sigmoid_focal_loss``, so a detector under
   ``torch.autocast(dtype=torch.bfloat16)`` stopped in them.
   Their autograd functions now run on float32 copies of bf16 or fp16
   inputs (on any device) and give the caller what it expects: RoIAlign's
   features and their gradient in the input's dtype, NMS indices (``nms``
   then gathers the caller's own boxes and scores), the focal loss in
   float32 like any loss under autocast. ``batched_nms`` runs on float32
   boxes too: it adds its class offsets in the boxes' dtype, and in bf16
   they rounded the boxes of most COCO classes beyond recognition. Float32
   and float64 inputs reach mmcv's code unchanged.
"""
import functools
import sys
import types

import torch
import torch.distributed as torch_dist
from mmengine.device import (is_cuda_available, is_mlu_available,
                             is_musa_available, is_npu_available)
from mmengine.dist import utils as dist_utils
from mmengine.logging import HistoryBuffer
from mmengine.model import MMDistributedDataParallel
from mmengine.runner import BaseLoop, Runner
from mmengine.runner import checkpoint as mmengine_checkpoint
from mmengine.runner.checkpoint import CheckpointLoader

from . import checkpoint
from .saving import install_crash_safe_saving

_applied = False


def apply() -> None:
    """Apply all fixes once per process."""
    global _applied
    if _applied:
        return
    _install_safe_loading()
    dist_utils._init_dist_pytorch = _cpu_aware_init_dist_pytorch(
        dist_utils._init_dist_pytorch)
    MMDistributedDataParallel.__init__ = _cpu_aware_ddp_init(
        MMDistributedDataParallel.__init__)
    install_crash_safe_saving()
    _install_float32_mmcv_ops()
    _applied = True


def _install_safe_loading():
    checkpoint.install_allowlist()
    checkpoint.install_torch_load_guard()
    HistoryBuffer.__reduce__ = _history_buffer_reduce
    CheckpointLoader.register_scheme(
        prefixes='', loader=checkpoint.load_checkpoint_file, force=True)
    get_loader = CheckpointLoader._get_checkpoint_loader.__func__
    CheckpointLoader._get_checkpoint_loader = classmethod(
        _guarded_lookup(get_loader))
    mmengine_checkpoint.load_state_dict = _fit_checked(
        mmengine_checkpoint.load_state_dict)
    mmengine_checkpoint._load_checkpoint_with_prefix = (
        checkpoint.load_checkpoint_with_prefix)
    Runner.load_checkpoint = _with_runner_rule(Runner.load_checkpoint)
    Runner._init_model_weights = _with_runner_rule(
        Runner._init_model_weights)


def _guarded_lookup(get_loader):
    # at lookup, so that schemes registered after import are covered too

    @functools.wraps(get_loader)
    def wrapper(cls, path):
        loader = get_loader(cls, path)
        return None if loader is None else checkpoint.guard_loader(loader)

    return wrapper


def _fit_checked(load_state_dict):

    @functools.wraps(load_state_dict)
    def wrapper(module, state_dict, strict=False, logger=None):
        rule = checkpoint.current_rule()
        if rule in ('all', 'most'):
            checkpoint.check_state_dict(module, state_dict, rule)
        return load_state_dict(module, state_dict, strict, logger)

    return wrapper


def _with_runner_rule(method):
    """Run ``method`` of a runner under its fit rule: 'off' when the config
    sets ``allow_partial_load``, else 'most' for a run that trains (its
    train loop is built) and 'all' for one that only tests or validates:
    a partly loaded model would report numbers of an untrained part."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        if self.cfg.get('allow_partial_load', False):
            rule = 'off'
        elif isinstance(self._train_loop, BaseLoop):
            rule = 'most'
        else:
            rule = 'all'
        with checkpoint.require_loaded(rule):
            return method(self, *args, **kwargs)

    return wrapper


def _cpu_aware_init_dist_pytorch(init_dist_pytorch):

    @functools.wraps(init_dist_pytorch)
    def wrapper(backend, init_backend='torch', **kwargs):
        has_accelerator = (is_cuda_available() or is_npu_available()
                           or is_mlu_available() or is_musa_available())
        if has_accelerator or init_backend != 'torch':
            return init_dist_pytorch(backend, init_backend, **kwargs)
        # No GPU to pin, and NCCL needs one: torchrun's env:// with gloo.
        if backend == 'nccl':
            backend = 'gloo'
        torch_dist.init_process_group(backend=backend, **kwargs)

    return wrapper


def _cpu_aware_ddp_init(ddp_init):

    @functools.wraps(ddp_init)
    def wrapper(self, module, *args, **kwargs):
        on_cpu = all(p.device.type == 'cpu' for p in module.parameters())
        if on_cpu:
            # DDP rejects device_ids for CPU modules.
            kwargs.pop('device_ids', None)
            kwargs.pop('output_device', None)
        ddp_init(self, module, *args, **kwargs)

    return wrapper


def _history_buffer_reduce(self):
    return (HistoryBuffer,
            (self._log_history, self._count_history, self.max_length))


def _install_float32_mmcv_ops():
    try:
        from mmcv.ops.focal_loss import SigmoidFocalLossFunction
        from mmcv.ops.nms import NMSop, batched_nms
        from mmcv.ops.roi_align import RoIAlignFunction
    except ImportError:  # mmcv-lite: no compiled ops
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
