"""Checkpoint loading that stays safe on torch>=2.6.

torch>=2.6 loads with ``weights_only=True``. mmengine 0.10.7 stores a few
plain Python objects in the checkpoints its runner writes (the message hub's
``HistoryBuffer`` and the numpy arrays and scalars inside it), so without
help it cannot load them again. We allow exactly those classes and keep
``weights_only`` on: a file that would import anything else is refused before
any of it runs. (:mod:`mmacmix.utils.compat` makes ``HistoryBuffer`` pickle
without ``getattr``.)
"""
import os.path as osp
import pickle
import re

import numpy as np
import torch


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be loaded; the message says why."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint whose unpickling would import code outside the
    allowlist. Nothing in it was executed."""


def allowed_checkpoint_globals() -> list:
    """The non-tensor classes found in checkpoints this project writes.

    They were read off real mmdet, mmseg and mmpretrain runner checkpoints
    with ``torch.serialization.get_unsafe_globals_in_checkpoint``.
    """
    from mmengine.logging import HistoryBuffer
    return [
        HistoryBuffer,  # the message hub's logged scalars
        np._core.multiarray._reconstruct,  # numpy arrays inside it
        np.ndarray,
        np.dtype,
        np._core.multiarray.scalar,  # numpy scalars (e.g. best metric)
        # numpy builds dtypes of these classes from their pickled state
        np.dtypes.Float64DType, np.dtypes.Float32DType,
        np.dtypes.Float16DType, np.dtypes.Int64DType, np.dtypes.Int32DType,
        np.dtypes.BoolDType,
    ]


def install_allowlist() -> None:
    """Add :func:`allowed_checkpoint_globals` to torch's weights_only
    allowlist for this process."""
    torch.serialization.add_safe_globals(allowed_checkpoint_globals())


def load_checkpoint_file(filename: str, map_location=None):
    """``torch.load`` with ``weights_only=True`` and errors that say what is
    wrong with the file.

    Raises:
        FileNotFoundError: the file does not exist.
        UnsafeCheckpointError: unpickling would import a global outside the
            allowlist (for example ``os.system``). The file is not executed.
        CheckpointError: the file is truncated, corrupt or no checkpoint.
    """
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint {filename} can not be found')
    try:
        return torch.load(filename, map_location=map_location,
                          weights_only=True)
    except pickle.UnpicklingError as err:
        # torch names the first global or class it refused:
        # "... GLOBAL posix.system ..." or "... but got <class 'x.Y'>"
        refused = re.search(r"GLOBAL (\S+)|but got <class '([^']+)'>",
                            str(err))
        if refused is None:
            raise CheckpointError(
                f'checkpoint {filename} is corrupt or not a PyTorch '
                f'checkpoint ({err})') from None
        name = refused.group(1) or refused.group(2)
        raise UnsafeCheckpointError(
            f'refused to load checkpoint {filename}: unpickling it would '
            f'import {name}, which is not a tensor, a container or one of '
            'the classes mmacmix allows. Nothing in the file '
            'was executed. If the file comes from a source you trust and '
            'holds weights, re-save its state dict with plain types.'
        ) from None
    except (RuntimeError, OSError, EOFError, KeyError, ValueError) as err:
        raise CheckpointError(
            f'checkpoint {filename} is truncated, corrupt or not a PyTorch '
            f'checkpoint ({type(err).__name__}: {err})') from None
