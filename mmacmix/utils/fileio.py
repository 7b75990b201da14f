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
