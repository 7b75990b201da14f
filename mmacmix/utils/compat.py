"""Fixes that let mmengine 0.10.7 run on today's PyTorch and on CPU-only
machines, applied at runtime when ``mmacmix`` is imported (every config
imports it through ``custom_imports``). Nothing in site-packages is edited,
and on GPUs mmengine's own code paths run unchanged.

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
"""
import functools

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
