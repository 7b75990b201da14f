"""Checkpoint loading that cannot run code, from any source mmengine reads,
and that refuses a checkpoint of another model (docs/checkpoint_loading.md).

:func:`safe_torch_load` loads weights only, with an allowlist of the classes
mmengine's runner checkpoints hold; :func:`guard_loader` makes a scheme
loader of mmengine's ``CheckpointLoader`` read that way, however it fetches
the file; :func:`check_state_dict` refuses a state dict that fills too
little of a module, inside :func:`require_loaded`. How they are wired into
mmengine and torch: :mod:`mmacmix.engine.patches`.
"""
import contextlib
import functools
import io
import os
import os.path as osp
import pickletools
import threading
import zipfile
from collections.abc import Mapping

import numpy as np
import torch

# torch's own loader (mmacmix.engine.patches.torch wraps torch.load)
_torch_load = torch.serialization.load
# what the loaders of this thread are doing: the checkpoint being read
# (``source``), the last one read (``last``), the fit rule (``rule``)
_state = threading.local()
_EXAMPLES = 3  # key names quoted in an error


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be loaded; the message says why."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint whose unpickling would import code outside the
    allowlist. Nothing in it was executed."""


class CheckpointMismatchError(CheckpointError):
    """A checkpoint that does not fit the model it is loaded into."""


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


def load_checkpoint_file(filename: str, map_location=None):
    """A local checkpoint file through :func:`safe_torch_load`.

    Raises:
        FileNotFoundError: the file does not exist.
        UnsafeCheckpointError, CheckpointError: see :func:`safe_torch_load`.
    """
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint {filename} can not be found')
    return safe_torch_load(filename, map_location)


def safe_torch_load(f, map_location=None, source=None):
    """``torch.load(f, weights_only=True)`` with errors that say what is
    wrong with the file.

    Args:
        f (str | PathLike | file-like): what ``torch.load`` reads.
        map_location: as for ``torch.load``.
        source (str, optional): where ``f`` came from (a URL, a prefixed
            path), named in errors. Defaults to ``f``.

    Raises:
        FileNotFoundError: the path does not exist.
        UnsafeCheckpointError: unpickling would import a global outside the
            allowlist (for example ``os.system``), in any pickle protocol.
            Nothing in the file is executed.
        CheckpointError: the file is truncated, corrupt or no checkpoint.
    """
    name = _describe(f, source)
    try:
        return _torch_load(f, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as err:  # noqa: B902
        # weights_only ran nothing, so whatever failed is the file's doing
        # (IndexError, struct.error, zip errors, ...): one error type. What
        # is unsafe is read off the opcodes, not torch's message, which
        # stops protocols 0, 4 and 5 at DICT or FRAME before their globals
        # and names a global cut short by a truncation ("GLOBAL torch.").
        unsafe = _unsafe_globals(f)
        if unsafe:
            raise UnsafeCheckpointError(
                f'refused to load checkpoint {name}: unpickling it would '
                f'import {unsafe}, which is not a tensor, a container or one '
                'of the classes mmacmix allows. Nothing in the file was '
                'executed. If the file comes from a source you trust and '
                'holds weights, re-save its state dict with plain '
                'types.') from None
        raise CheckpointError(
            f'checkpoint {name} is truncated, corrupt or not a PyTorch '
            f'checkpoint ({_reason(err)})') from None


def _describe(f, source):
    path = os.fspath(f) if isinstance(f, (str, os.PathLike)) else None
    if source is None:
        return path or 'from a stream'
    if path is None or str(path) == str(source):
        return str(source)
    return f'{source} (read from {path})'


def _reason(err):
    """torch's message without its advice to retry with
    ``weights_only=False``."""
    text = str(err).split('WeightsUnpickler error:')[-1]
    lines = [line.strip() for line in text.splitlines()
             if line.strip() and 'weights_only' not in line
             and not line.startswith('Check the documentation')]
    reason = ' '.join(lines)[:300]
    return f'{type(err).__name__}: {reason}' if reason else type(err).__name__


def _unsafe_globals(f):
    """The globals outside torch's allowlist and ours that the pickles in
    ``f`` name (all protocols, ``STACK_GLOBAL`` too), found by reading the
    opcodes, not by unpickling. '' if none; the scan stops at the first
    bytes that are no pickle."""
    from torch import _weights_only_unpickler as unpickler
    allowed = (set(unpickler._get_allowed_globals())
               | set(unpickler._get_user_allowed_globals()))
    found = [name for name in dict.fromkeys(_pickled_globals(f))
             if name not in allowed]
    return ', '.join(found)


def _pickled_globals(f):
    try:
        with _open(f) as stream:
            if zipfile.is_zipfile(stream):
                with zipfile.ZipFile(stream) as archive:
                    for info in archive.infolist():
                        if info.filename.endswith('.pkl'):
                            yield from _globals_in_pickle(
                                io.BytesIO(archive.read(info)))
                return
            stream.seek(0)
            # legacy format: magic number, protocol, system info, data and
            # storage keys, one pickle each
            for _ in range(5):
                yield from _globals_in_pickle(stream)
    except Exception:  # noqa: B902  (bytes that are no pickle: stop)
        return


@contextlib.contextmanager
def _open(f):
    if isinstance(f, (str, os.PathLike)):
        with open(f, 'rb') as stream:
            yield stream
    else:
        f.seek(0)
        yield f


def _globals_in_pickle(stream):
    """``module.name`` of each global one pickle imports. A
    ``STACK_GLOBAL`` takes the two strings last pushed (directly or from
    the memo); one built any other way is reported as such."""
    memo, pushed = {}, [None, None]
    for opcode, arg, _ in pickletools.genops(stream):
        name = opcode.name
        if name in ('GLOBAL', 'INST'):
            yield arg.replace(' ', '.')
            pushed.append(None)
        elif name == 'STACK_GLOBAL':
            module, attr = pushed[-2:]
            yield (f'{module}.{attr}' if isinstance(module, str)
                   and isinstance(attr, str) else '<a computed global>')
            pushed.append(None)
        elif 'UNICODE' in name or 'STRING' in name:
            pushed.append(arg)
        elif name in ('GET', 'BINGET', 'LONG_BINGET'):
            pushed.append(memo.get(arg))
        elif name == 'MEMOIZE':
            memo[len(memo)] = pushed[-1]
        elif name in ('PUT', 'BINPUT', 'LONG_BINPUT'):
            memo[arg] = pushed[-1]
        elif name not in ('PROTO', 'FRAME'):
            pushed.append(None)
        del pushed[:-2]


def guard_loader(loader):
    """``loader`` (a scheme loader of mmengine's ``CheckpointLoader``) with
    every ``torch.load`` it makes run as :func:`safe_torch_load`, and its
    failures as :class:`CheckpointError`.

    It works for loaders registered at any time and however they fetch the
    file (cache, download, storage backend), as long as they read it with
    ``torch.load`` (routed here by :mod:`mmacmix.engine.patches.torch`).
    """
    if getattr(loader, 'mmacmix_guarded', False):
        return loader

    @functools.wraps(loader)
    def guarded(filename, *args, **kwargs):
        outer = getattr(_state, 'source', None)
        _state.source = outer or filename
        try:
            checkpoint = loader(filename, *args, **kwargs)
        except (CheckpointError, FileNotFoundError):
            raise
        except (OSError, KeyError, ImportError) as err:
            # download errors, unknown model names, backends not installed
            raise CheckpointError(f'cannot load checkpoint {filename}: '
                                  f'{type(err).__name__}: {err}') from None
        finally:
            _state.source = outer
        if not isinstance(checkpoint, Mapping):
            raise CheckpointError(
                f'checkpoint {filename} holds a {type(checkpoint).__name__}, '
                'not a dict of weights')
        _state.last = filename
        return checkpoint

    guarded.mmacmix_guarded = True
    if not guarded.__name__.startswith('load_from_'):
        # mmengine logs the name after this prefix as the backend's
        guarded.__name__ = 'load_from_' + guarded.__name__
    return guarded


def current_source():
    """The checkpoint a :func:`guard_loader` loader is reading in this
    thread, or None outside such loaders."""
    return getattr(_state, 'source', None)


@contextlib.contextmanager
def require_loaded(rule):
    """Within it (in this thread), loading a state dict into a module
    through mmengine first checks the fit with :func:`check_state_dict`.

    Args:
        rule (str | None): 'all' (every tensor of the module must load),
            'most' (more than half of them), 'off' (mmengine's warnings
            only). None leaves the rule of an enclosing block.
    """
    outer = getattr(_state, 'rule', None)
    _state.rule = rule or outer
    try:
        yield
    finally:
        _state.rule = outer


def current_rule():
    """The rule of the innermost :func:`require_loaded` block, or None."""
    return getattr(_state, 'rule', None)


def check_state_dict(module, state_dict, rule, source=None) -> None:
    """Refuse a state dict that fills too little of ``module``.

    Counted over the module's state dict (parameters and persistent buffers
    but BatchNorm's ``num_batches_tracked``, as mmengine does): loaded,
    missing, shape-mismatched, unexpected.

    Args:
        module (nn.Module): the module being loaded.
        state_dict (Mapping): what is loaded into it, keys relative to it.
        rule (str): 'all' refuses any missing or mismatched tensor, 'most'
            refuses when at most half of them load.
        source (str, optional): the checkpoint, for the message. Defaults
            to the last one a guarded loader read in this thread.

    Raises:
        CheckpointMismatchError: with the counts and a few key names.
    """
    from mmengine.model import is_model_wrapper
    while is_model_wrapper(module):
        module = module.module
    source = source or getattr(_state, 'last', 'the checkpoint')
    if not isinstance(state_dict, Mapping):
        raise CheckpointMismatchError(
            f'checkpoint {source} holds no state dict')
    expected = {key: tuple(value.shape)
                for key, value in module.state_dict().items()
                if not key.endswith('num_batches_tracked')}
    given = {key: tuple(getattr(value, 'shape', ('?', )))
             for key, value in state_dict.items()
             if not key.endswith('num_batches_tracked')}
    missing = [key for key in expected if key not in given]
    mismatched = [key for key in expected
                  if key in given and given[key] != expected[key]]
    unexpected = [key for key in given if key not in expected]
    loaded = len(expected) - len(missing) - len(mismatched)
    if rule == 'all':
        refuse = bool(missing or mismatched)
        need = 'every one of them must load'
    else:
        refuse = 2 * loaded < len(expected)
        need = 'most of them must load'
    if not refuse:
        return
    parts = [
        f'checkpoint {source} does not fit {type(module).__name__}: '
        f'{loaded} of its {len(expected)} tensors load ({need}), '
        f'{len(missing)} missing, {len(mismatched)} shape-mismatched, '
        f'{len(unexpected)} unexpected'
    ]
    for what, keys in (('missing', missing), ('unexpected', unexpected)):
        if keys:
            parts.append(f'{what}: {_examples(keys)}')
    if mismatched:
        parts.append('mismatched: ' + _examples([
            f'{key} {list(given[key])} in the file, {list(expected[key])} '
            'in the model' for key in mismatched
        ]))
    raise CheckpointMismatchError(
        '; '.join(parts) + '. Is it a checkpoint of this model? To load it '
        'anyway, pass --allow-partial or set allow_partial_load = True in '
        'the config.')


def _examples(keys):
    more = len(keys) - _EXAMPLES
    return ', '.join(keys[:_EXAMPLES]) + (f' (+{more} more)'
                                          if more > 0 else '')


def load_checkpoint_with_prefix(prefix, filename, map_location=None):
    """The tensors of checkpoint ``filename`` under ``prefix``, with it
    stripped (a backbone from a classifier: ``prefix='backbone.'``).

    mmengine's ``_load_checkpoint_with_prefix`` with an error that names the
    prefix and a few of the file's keys when none matches.

    Raises:
        CheckpointMismatchError: no key starts with ``prefix``.
    """
    from mmengine.runner.checkpoint import _load_checkpoint
    checkpoint = _load_checkpoint(filename, map_location=map_location)
    state_dict = checkpoint.get('state_dict', checkpoint)
    if not isinstance(state_dict, Mapping):
        raise CheckpointMismatchError(
            f'checkpoint {filename} holds no state dict')
    if not prefix.endswith('.'):
        prefix += '.'
    found = {key[len(prefix):]: value
             for key, value in state_dict.items() if key.startswith(prefix)}
    if not found:
        raise CheckpointMismatchError(
            f"prefix '{prefix}' matches none of the {len(state_dict)} keys "
            f'of checkpoint {filename} (e.g. {_examples(list(state_dict))})')
    return found
