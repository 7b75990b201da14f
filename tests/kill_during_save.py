"""Test-only: imported into a training run (``custom_imports``), it kills
the run with SIGKILL in the middle of writing a checkpoint.

``$MMACMIX_KILL_DURING_SAVE`` names the checkpoint (e.g. ``epoch_2.pth``):
the first file opened for writing whose name contains it (the checkpoint or
a temporary file for it, whichever the code under test writes) gets its
first ``$MMACMIX_KILL_AFTER_BYTES`` bytes (default 1 MiB), flushed to the
OS, and then the process kills itself. Nothing else is changed: the save
code runs as it is until the kill.
"""
import builtins
import os
import signal

TARGET = os.environ.get('MMACMIX_KILL_DURING_SAVE')
KILL_AFTER = int(os.environ.get('MMACMIX_KILL_AFTER_BYTES', 2**20))
_open = builtins.open


class _KillAfter:
    """A file that passes writes through until ``KILL_AFTER`` bytes, then
    flushes what it has and SIGKILLs the process."""

    def __init__(self, file):
        self._file = file
        self._written = 0

    def write(self, data):
        room = KILL_AFTER - self._written
        if len(data) < room:
            self._written += len(data)
            return self._file.write(data)
        self._file.write(memoryview(data).cast('B')[:room])
        self._file.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self._file.__exit__(*exc)

    def __getattr__(self, name):
        return getattr(self._file, name)


def _open_and_kill_in_target(file, mode='r', *args, **kwargs):
    handle = _open(file, mode, *args, **kwargs)
    if 'w' in mode and TARGET in os.path.basename(os.fspath(file)):
        return _KillAfter(handle)
    return handle


if TARGET:
    builtins.open = _open_and_kill_in_target
