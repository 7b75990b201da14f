"""Crash-safe file writes, for checkpoints and converted weights.

A file is written under a temporary name in its own folder, flushed to
disk (``fsync``), then renamed over its final name, which POSIX makes
atomic; the folder is synced too, so the rename survives a power cut.
Whoever reads the final name (a resumed run, a test) sees the previous
file or the complete new one, never a part. A process killed mid-write
leaves only its temporary file, ``.<name>.<pid>.tmp``, which nothing reads
and :func:`remove_stale_temp_files` clears.
"""
import contextlib
import functools
import glob
import os
import os.path as osp

TEMP_SUFFIX = '.tmp'


def temp_path(path: str) -> str:
    """The temporary name :func:`atomic_open` writes ``path`` under: hidden,
    in the same folder (a rename within one filesystem is atomic) and
    unique per process."""
    folder, name = osp.split(osp.abspath(path))
    return osp.join(folder, f'.{name}.{os.getpid()}{TEMP_SUFFIX}')


def _sync_folder(folder: str) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_open(path: str, mode: str = 'wb'):
    """Open ``path`` for writing, all or nothing.

    The file object yielded writes to :func:`temp_path`; when the block
    ends without an exception the file is synced and renamed to ``path``
    (replacing any file there), and its folder, created if needed, is
    synced. On an exception the temporary file is removed and ``path`` is
    left as it was.

    Args:
        path (str): The file to write.
        mode (str): ``'wb'`` (bytes) or ``'w'`` (text, UTF-8).
            Defaults to 'wb'.
    """
    if mode not in ('w', 'wb'):
        raise ValueError(f"mode must be 'w' or 'wb', got {mode!r}")
    path = osp.abspath(path)
    folder = osp.dirname(path)
    os.makedirs(folder, exist_ok=True)
    tmp = temp_path(path)
    encoding = None if 'b' in mode else 'utf-8'
    try:
        with open(tmp, mode, encoding=encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise
    _sync_folder(folder)


def remove_stale_temp_files(path: str) -> None:
    """Remove the temporary files that killed writers of ``path`` left.
    Only for files that one process alone writes (a work dir's
    checkpoints, written by rank 0)."""
    folder, name = osp.split(osp.abspath(path))
    pattern = osp.join(glob.escape(folder),
                       f'.{glob.escape(name)}.*{TEMP_SUFFIX}')
    for stale in glob.glob(pattern):
        with contextlib.suppress(FileNotFoundError):
            os.remove(stale)


# ---------------------------------------------------------------------------
# mmengine's checkpoints (installed by mmacmix.utils.compat)
# ---------------------------------------------------------------------------
def save_checkpoint(checkpoint: dict,
                    filename: str,
                    file_client_args=None,
                    backend_args=None) -> None:
    """mmengine's ``save_checkpoint``, crash-safe on local disks: the file
    is written with :func:`atomic_open` (streamed, without mmengine's copy
    in memory). Other backends (``pavi://``, s3, ...) go to mmengine's."""
    import torch
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


def install_crash_safe_saving() -> None:
    """Make mmengine's checkpoint saving crash-safe: every checkpoint is
    written atomically, then ``last_checkpoint`` (atomically), and only
    then are outdated checkpoints (``max_keep_ckpts``, previous ``best_*``)
    removed. A run killed at any moment leaves its previous checkpoint
    and a ``last_checkpoint`` naming a complete file."""
    global _mmengine_save_checkpoint
    import mmengine.runner
    from mmengine.hooks import CheckpointHook, checkpoint_hook
    from mmengine.runner import checkpoint, runner
    if _mmengine_save_checkpoint is not None:
        return
    _mmengine_save_checkpoint = checkpoint.save_checkpoint
    # the module itself, Runner's import and the package's (the hook's
    # model publishing, the strategies)
    checkpoint.save_checkpoint = save_checkpoint
    runner.save_checkpoint = save_checkpoint
    mmengine.runner.save_checkpoint = save_checkpoint
    CheckpointHook._save_checkpoint_with_step = _save_then_remove(
        CheckpointHook._save_checkpoint_with_step)
    CheckpointHook._save_best_checkpoint = _save_then_remove(
        CheckpointHook._save_best_checkpoint)
    checkpoint_hook.open = _checkpoint_hook_open
