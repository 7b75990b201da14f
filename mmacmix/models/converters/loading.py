"""Reading official checkpoints without running pickled code."""
import functools
import os.path as osp
import pickle
import types
from collections import OrderedDict
from typing import Dict

import torch
from torch import Tensor


class ConversionError(ValueError):
    """A source the converter cannot read or convert (missing, corrupt,
    no weights, a layout it does not know) or a destination it must not
    write; the message says which and why."""


class _InertObject(dict):
    """Stands in for any pickled object of a class outside the allowlist
    (e.g. the yacs ``CfgNode`` the official trainer stores as ``config``).

    It keeps the dict items the pickle gives it and ignores constructor
    arguments and state, so nothing of the original class ever runs. Each
    refused global gets its own subclass, named after it (see
    :func:`_inert_class`), so errors can say what was not loaded.
    """

    def __new__(cls, *args, **kwargs):
        return super().__new__(cls)

    def __init__(self, *args, **kwargs):
        super().__init__()

    def __setstate__(self, state):
        pass


_ALLOWED_GLOBALS = {
    ('collections', 'OrderedDict'): OrderedDict,
    ('builtins', 'set'): set,
    ('__builtin__', 'set'): set,
    ('builtins', 'frozenset'): frozenset,
    ('__builtin__', 'frozenset'): frozenset,
    ('torch._utils', '_rebuild_tensor_v2'): torch._utils._rebuild_tensor_v2,
    ('torch._utils', '_rebuild_parameter'): torch._utils._rebuild_parameter,
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only tensors and plain containers; every other global
    becomes :class:`_InertObject`. Nothing is imported.

    (``torch.load`` resolves storage types itself before asking this.)
    """

    def find_class(self, module: str, name: str):
        allowed = _ALLOWED_GLOBALS.get((module, name))
        return allowed or _inert_class(f'{module}.{name}')


@functools.lru_cache(maxsize=None)
def _inert_class(qualified_name: str) -> type:
    """An :class:`_InertObject` subclass standing in for the global
    ``qualified_name`` (e.g. ``yacs.config.CfgNode``, ``posix.system``)."""
    return type(qualified_name, (_InertObject, ), {})


_restricted_pickle = types.ModuleType('mmacmix_restricted_pickle')
_restricted_pickle.Unpickler = _RestrictedUnpickler
_restricted_pickle.load = lambda file, **kwargs: _RestrictedUnpickler(
    file, **kwargs).load()


def load_official_checkpoint(path: str) -> dict:
    """Load an official checkpoint (which may pickle a yacs ``CfgNode`` that
    ``weights_only`` loading refuses) without executing pickled code:
    tensors and containers load as usual, any other object as an inert
    dict of its items.

    Raises:
        ConversionError: ``path`` is missing, no file, empty, or not a
            readable PyTorch checkpoint (truncated, corrupt, text, ...).
    """
    path = str(path)
    if not osp.exists(path):
        raise ConversionError(f'source {path} does not exist')
    if not osp.isfile(path):
        raise ConversionError(f'source {path} is not a file')
    if osp.getsize(path) == 0:
        raise ConversionError(f'source {path} is empty (0 bytes)')
    try:
        return torch.load(
            path,
            map_location='cpu',
            weights_only=False,  # the restricted unpickler replaces it
            pickle_module=_restricted_pickle)
    except Exception as err:
        # The restricted unpickler runs no code of the file, so whatever
        # it raises (EOFError, UnpicklingError, struct.error, ...) means
        # the file is damaged or no checkpoint.
        reason = str(err).splitlines()[0][:200] if str(err) else ''
        raise ConversionError(
            f'source {path} is truncated, corrupt or not a PyTorch '
            f'checkpoint ({type(err).__name__}: {reason})') from None


def _describe(value) -> str:
    """A value's type as errors name it (an inert stand-in by the global
    it replaced, e.g. ``posix.system``)."""
    if isinstance(value, _InertObject):
        return f'a {type(value).__name__} object (not loaded)'
    return f'a {type(value).__name__}'


def extract_state_dict(checkpoint) -> Dict[str, Tensor]:
    """The weights of a checkpoint: under ``model`` (official trainers),
    ``state_dict`` (mmengine and others) or the checkpoint itself, without a
    ``module.`` (DataParallel) prefix.

    Raises:
        ConversionError: the checkpoint is no dict, or its weights are
            empty or hold something other than tensors.
    """
    if not isinstance(checkpoint, dict) or isinstance(checkpoint,
                                                      _InertObject):
        raise ConversionError(f'the checkpoint holds {_describe(checkpoint)}'
                              ', not a dict of weights')
    for key in ('model', 'state_dict'):
        if isinstance(checkpoint.get(key), dict):
            checkpoint = checkpoint[key]
            break
    if not checkpoint:
        raise ConversionError('the checkpoint holds no weights')
    others = [f'{k!r} is {_describe(v)}' for k, v in checkpoint.items()
              if not isinstance(v, Tensor)]
    if others:
        raise ConversionError(
            f'the checkpoint\'s weights are not all tensors: '
            f'{"; ".join(others[:5])}' +
            (f' and {len(others) - 5} more' if len(others) > 5 else ''))
    return OrderedDict((k[len('module.'):] if k.startswith('module.') else k,
                        v) for k, v in checkpoint.items())
