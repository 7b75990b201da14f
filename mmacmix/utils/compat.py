"""Fixes that let mmengine 0.10.7 run on today's PyTorch and on CPU-only
machines, applied at runtime when ``mmacmix`` is imported (every config
imports it through ``custom_imports``). Nothing in site-packages is edited,
and on GPUs mmengine's own code paths run unchanged.

1. Checkpoints: torch>=2.6 loads with ``weights_only=True``; mmengine's local
   loader is replaced by :func:`mmacmix.utils.checkpoint.load_checkpoint_file`
   and the classes mmengine's own checkpoints need are allowlisted. The
   message hub's ``HistoryBuffer`` pickles as its constructor arguments:
   its default pickle also stores its statistics functions, which only
   ``builtins.getattr`` could restore, and allowing ``getattr`` would let a
   file reach far beyond the allowlist.
2. Distributed on CPU: mmengine's ``init_dist`` calls
   ``torch.cuda.set_device`` and asks for NCCL, and its DDP wrapper always
   passes ``device_ids``. Without CUDA we use gloo and drop ``device_ids``.
3. Crash-safe checkpoints: mmengine writes a checkpoint in place, deletes
   the outdated ones (``max_keep_ckpts``) before the new one is complete
   and rewrites ``last_checkpoint`` in place, so a kill mid-save can lose
   every checkpoint. :func:`mmacmix.utils.saving.install_crash_safe_saving`
   writes both atomically, and deletes only afterwards.
"""
import functools

import torch.distributed as torch_dist
from mmengine.device import (is_cuda_available, is_mlu_available,
                             is_musa_available, is_npu_available)
from mmengine.dist import utils as dist_utils
from mmengine.logging import HistoryBuffer
from mmengine.model import MMDistributedDataParallel
from mmengine.runner.checkpoint import CheckpointLoader

from .checkpoint import install_allowlist, load_checkpoint_file
from .saving import install_crash_safe_saving

_applied = False


def apply() -> None:
    """Apply all fixes once per process."""
    global _applied
    if _applied:
        return
    install_allowlist()
    HistoryBuffer.__reduce__ = _history_buffer_reduce
    CheckpointLoader.register_scheme(
        prefixes='', loader=load_checkpoint_file, force=True)
    dist_utils._init_dist_pytorch = _cpu_aware_init_dist_pytorch(
        dist_utils._init_dist_pytorch)
    MMDistributedDataParallel.__init__ = _cpu_aware_ddp_init(
        MMDistributedDataParallel.__init__)
    install_crash_safe_saving()
    _applied = True


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
