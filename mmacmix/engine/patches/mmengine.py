"""mmengine: safe and fit-checked checkpoint loading, crash-safe saving, and
distributed runs on CPU-only machines (docs/checkpoint_loading.md,
docs/checkpoints.md, docs/get_started.md).

Replaces: the local-file scheme of ``CheckpointLoader``, through its
extension point ``register_scheme`` (read by
:func:`mmacmix.engine.checkpoint.load_checkpoint_file`); in place, as
mmengine has no extension point for them:

1. ``CheckpointLoader._get_checkpoint_loader``, so that every scheme's
   loader, registered now or later, is wrapped by
   :func:`~mmacmix.engine.checkpoint.guard_loader` when it is looked up;
   ``HistoryBuffer.__reduce__``, so the message hub's buffer pickles as its
   constructor arguments.
2. ``mmengine.runner.checkpoint.load_state_dict`` and
   ``_load_checkpoint_with_prefix``, ``Runner.load_checkpoint`` and
   ``Runner._init_model_weights``: a state dict the runner loads
   (``load_from``, ``Pretrained`` init) must fit the model, mostly when
   training, entirely when testing, unless the config sets
   ``allow_partial_load = True``; a prefix matching nothing is an error
   naming the file's keys.
3. ``dist.utils._init_dist_pytorch`` and
   ``MMDistributedDataParallel.__init__``: without an accelerator, gloo
   instead of NCCL and no ``device_ids``; on GPUs mmengine's own code runs.
4. ``save_checkpoint`` (the module function the runner calls),
   ``CheckpointHook``'s two save methods and the ``open`` its module sees:
   both the checkpoint and ``last_checkpoint`` are written atomically
   (:func:`mmacmix.utils.fileio.atomic_open`), outdated ones removed only
   afterwards.

Why: (1) torch.hub and other loaders read with ``weights_only=False``, and
the default pickle of ``HistoryBuffer`` stores its statistics functions,
which only ``builtins.getattr`` could restore: allowing ``getattr`` would
let a file reach far beyond the allowlist. (2) A file of another model
loads silently, as mmengine only warns. (3) mmengine calls
``torch.cuda.set_device``, asks for NCCL and always passes ``device_ids``.
(4) mmengine writes a checkpoint in place, deletes the outdated ones
(``max_keep_ckpts``, the previous ``best_*``) before the new one is
complete and rewrites ``last_checkpoint`` in place, so a kill mid-save
could lose every checkpoint.

Versions: mmengine 0.10.7 (with torch 2.6 to 2.13).
Delete when: mmengine loads with ``weights_only`` everywhere (1), checks
the fit of what it loads (2), falls back to gloo on CPU (3) and saves
atomically (4).
"""
import functools

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

from ...utils.fileio import atomic_open, remove_stale_temp_files
from .. import checkpoint


def apply() -> None:
    _install_safe_loading()
    dist_utils._init_dist_pytorch = _cpu_aware_init_dist_pytorch(
        dist_utils._init_dist_pytorch)
    MMDistributedDataParallel.__init__ = _cpu_aware_ddp_init(
        MMDistributedDataParallel.__init__)
    _install_crash_safe_saving()


def _install_safe_loading():
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


def _save_checkpoint(checkpoint: dict,
                     filename: str,
                     file_client_args=None,
                     backend_args=None) -> None:
    """mmengine's ``save_checkpoint``, crash-safe on local disks: the file
    is written with :func:`atomic_open` (streamed, without mmengine's copy
    in memory). Other backends (``pavi://``, s3, ...) go to mmengine's."""
    from mmengine.fileio import LocalBackend, get_file_backend
    filename = str(filename)
    if (file_client_args is None and not filename.startswith('pavi://')
            and isinstance(
                get_file_backend(filename, backend_args=backend_args),
                LocalBackend)):
        with atomic_open(filename) as f:
            torch.save(checkpoint, f)
        # what an earlier, killed run left of this file
        remove_stale_temp_files(filename)
    else:
        _mmengine_save_checkpoint(checkpoint, filename, file_client_args,
                                  backend_args)


_mmengine_save_checkpoint = None


class _DeferredRemovals:
    """Stands in for a checkpoint hook's file backend while it saves: the
    hook deletes outdated checkpoints (``max_keep_ckpts``, the previous
    ``best_*``) *before* writing the new one; this records the deletions,
    and :func:`_save_then_remove` runs them once the new checkpoint and
    ``last_checkpoint`` are on disk."""

    def __init__(self, backend):
        self.backend = backend
        self.pending = []

    def remove(self, path: str) -> None:
        self.pending.append((self.backend.remove, path))

    def rmtree(self, path: str) -> None:
        self.pending.append((self.backend.rmtree, path))

    def __getattr__(self, name: str):
        return getattr(self.backend, name)


def _save_then_remove(save):
    """Wrap a ``CheckpointHook`` save method so that it removes outdated
    checkpoints only after it has saved (and not at all if saving fails).
    Nested calls (the best checkpoint's save calls the regular one) defer
    to the outermost."""

    @functools.wraps(save)
    def wrapper(hook, runner, *args, **kwargs):
        if isinstance(hook.file_backend, _DeferredRemovals):
            return save(hook, runner, *args, **kwargs)
        deferred = hook.file_backend = _DeferredRemovals(hook.file_backend)
        try:
            result = save(hook, runner, *args, **kwargs)
        finally:
            hook.file_backend = deferred.backend
        # never the checkpoints the hook has just named as its current ones
        current = {hook.last_ckpt, getattr(hook, 'best_ckpt_path', None),
                   *getattr(hook, 'best_ckpt_path_dict', {}).values()}
        for remove, path in deferred.pending:
            if path not in current and (hook.file_backend.isfile(path)
                                        or hook.file_backend.isdir(path)):
                remove(path)
        return result

    return wrapper


def _checkpoint_hook_open(file, mode='r', *args, **kwargs):
    """``open`` as seen by mmengine's checkpoint hook, whose only use is
    writing ``last_checkpoint`` (``open(path, 'w')``, which truncates
    first): writes go through :func:`atomic_open`."""
    if mode in ('w', 'wb'):
        return atomic_open(file, mode)
    return open(file, mode, *args, **kwargs)


def _install_crash_safe_saving():
    global _mmengine_save_checkpoint
    import mmengine.runner
    from mmengine.hooks import CheckpointHook, checkpoint_hook
    from mmengine.runner import runner
    _mmengine_save_checkpoint = mmengine_checkpoint.save_checkpoint
    # the module itself, Runner's import and the package's (the hook's
    # model publishing, the strategies)
    mmengine_checkpoint.save_checkpoint = _save_checkpoint
    runner.save_checkpoint = _save_checkpoint
    mmengine.runner.save_checkpoint = _save_checkpoint
    CheckpointHook._save_checkpoint_with_step = _save_then_remove(
        CheckpointHook._save_checkpoint_with_step)
    CheckpointHook._save_best_checkpoint = _save_then_remove(
        CheckpointHook._save_best_checkpoint)
    checkpoint_hook.open = _checkpoint_hook_open
