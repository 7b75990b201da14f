"""Conversion of official checkpoints to this project's layout.

The output is a plain state dict in the layout of mmpretrain's
``ImageClassifier`` with an mmacmix backbone (``backbone.*``, ``head.fc.*``),
loadable both as a classification checkpoint and, with
``prefix='backbone.'``, as a backbone's ``Pretrained`` init.

Each supported layout is a :class:`Layout`: regex rules that rename (and
reshape) the official keys, the keys it requires, and an optional step that
adds entries. A new layout (PVT v1, official ResNet-ACmix, ...) is one more
entry in :data:`LAYOUTS`.
"""
import functools
import os.path as osp
import pickle
import re
import types
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from mmacmix.utils.fileio import atomic_open

from .pvt_layout import PVT_V1_LAYOUT
from .resnet_acmix_layout import RESNET_ACMIX_LAYOUT_ARGS


class ConversionError(ValueError):
    """A source the converter cannot read or convert (missing, corrupt,
    no weights, a layout it does not know) or a destination it must not
    write; the message says which and why."""


# ---------------------------------------------------------------------------
# Reading official checkpoints without running pickled code
# ---------------------------------------------------------------------------
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


_DROP = object()


def to_plain(value):
    """Keep the plain-typed part of ``value`` (str, numbers, bool, None,
    containers of them) for checkpoint ``meta``; drop the rest."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, dict):
        items = {str(k): to_plain(v) for k, v in value.items()}
        return {k: v for k, v in items.items() if v is not _DROP}
    if isinstance(value, (list, tuple)):
        items = [to_plain(v) for v in value]
        return [v for v in items if v is not _DROP]
    return _DROP


# ---------------------------------------------------------------------------
# Layouts
# ---------------------------------------------------------------------------
Rule = Tuple[str, Optional[str], Optional[Callable[[Tensor], Tensor]]]


@dataclass
class Layout:
    """An official checkpoint layout.

    Args:
        name (str): Short name, stored in the converted ``meta``.
        description (str): What checkpoints have this layout.
        rules (list[tuple]): ``(pattern, replacement, transform)``: a key that
            fully matches the regex ``pattern`` is renamed by ``re.sub`` with
            ``replacement`` (None drops the key) and its value becomes
            ``transform(value)`` (None keeps it). The first matching rule
            wins; a key that matches none is unexpected.
        required (list[str]): Keys that must be present.
        block_pattern (str): Regex matching the prefix of a block's keys,
            e.g. ``layers.0.blocks.1.``.
        block_required (list[str]): Keys (after the prefix) that every block
            found must have.
        finalize (callable, optional): ``finalize(converted)`` adds entries
            to the converted state dict.
    """
    name: str
    description: str
    rules: List[Rule]
    required: List[str]
    block_pattern: str
    block_required: List[str]
    finalize: Optional[Callable[[Dict[str, Tensor]], None]] = None

    def check(self, state: Dict[str, Tensor]) -> Tuple[List[str], List[str]]:
        """Return the ``(missing, unexpected)`` keys of ``state``."""
        unexpected = [key for key in state if self._rule(key) is None]
        matches = (re.match(self.block_pattern, key) for key in state)
        blocks = sorted({match.group(0) for match in matches if match})
        missing = [key for key in self.required if key not in state]
        missing += [
            block + key for block in blocks for key in self.block_required
            if block + key not in state
        ]
        return missing, unexpected

    def convert(self, state: Dict[str, Tensor]) -> Dict[str, Tensor]:
        converted = OrderedDict()
        for key, value in state.items():
            pattern, replacement, transform = self._rule(key)
            if replacement is not None:
                converted[re.sub(pattern, replacement, key)] = (
                    transform(value) if transform else value)
        if self.finalize:
            self.finalize(converted)
        return converted

    def _rule(self, key: str) -> Optional[Rule]:
        return next(
            (rule for rule in self.rules if re.fullmatch(rule[0], key)), None)


_BLOCK = r'layers\.(\d+)\.blocks\.(\d+)\.'
_OUR_BLOCK = r'backbone.stages.\1.blocks.\2.'

# microsoft Swin-Transformer layout, shared by both Swin checkpoints
_SWIN_RULES: List[Rule] = [
    (r'patch_embed\.proj\.(weight|bias)',
     r'backbone.patch_embed.projection.\1', None),
    (r'patch_embed\.norm\.(weight|bias)', r'backbone.patch_embed.norm.\1',
     None),
    # (1, L, C) -> (1, C, H, W); the official models use square inputs
    (r'absolute_pos_embed', r'backbone.absolute_pos_embed',
     lambda t: t.transpose(1, 2).reshape(
         1, t.shape[2], round(t.shape[1]**0.5), -1)),
    (_BLOCK + r'(norm1|norm2|mlp\.fc1|mlp\.fc2|attn\.qkv|attn\.proj)\.'
     r'(weight|bias)', _OUR_BLOCK + r'\3.\4', None),
    (_BLOCK + r'attn\.relative_position_bias_table',
     _OUR_BLOCK + r'attn.relative_position_bias_table', None),
    # buffers the model recomputes
    (_BLOCK + r'(attn\.relative_position_index|attn_mask)', None, None),
    (r'layers\.(\d+)\.downsample\.(reduction|norm)\.(weight|bias)',
     r'backbone.stages.\1.downsample.\2.\3', None),
    # the final norm is the out norm of the last of Swin's four stages
    (r'norm\.(weight|bias)', r'backbone.norm3.\1', None),
    (r'head\.(weight|bias)', r'head.fc.\1', None),
]
_SWIN_REQUIRED = [
    'patch_embed.proj.weight', 'patch_embed.proj.bias',
    'patch_embed.norm.weight', 'patch_embed.norm.bias',
    'layers.0.blocks.0.attn.qkv.weight'
]
_SWIN_BLOCK_REQUIRED = [
    f'{layer}.{param}'
    for layer in ('norm1', 'attn.qkv', 'attn.proj', 'norm2', 'mlp.fc1',
                  'mlp.fc2') for param in ('weight', 'bias')
] + ['attn.relative_position_bias_table']
_ACMIX_BLOCK_REQUIRED = [
    'attn.fc.weight', 'attn.fc.bias', 'attn.dep_conv.weight', 'attn.rate1',
    'attn.rate2'
]


def _attention_only_rates(converted: Dict[str, Tensor]) -> None:
    """A plain Swin or PVT has no convolution path: start every block at
    rates (1, 0), so the converted model computes exactly the pretrained
    model, and let ``rate2`` (which gets gradients at once) learn the mix.
    ``fc`` and ``dep_conv`` keep the model's initialisation (shift
    kernels)."""
    for key in list(converted):
        attention = re.fullmatch(r'(.*\.attn\.)(qkv|q)\.weight', key)
        if attention:
            converted[attention.group(1) + 'rates.rate1'] = torch.ones(1)
            converted[attention.group(1) + 'rates.rate2'] = torch.zeros(1)


LAYOUTS: List[Layout] = [
    Layout(
        name='swin_acmix_official',
        description='official Swin-ACmix (LeapLabTHU/ACmix, Swin folder)',
        rules=_SWIN_RULES + [
            # Conv2d(3*heads, k*k, 1) -> Linear(3*heads, k*k)
            (_BLOCK + r'attn\.fc\.weight', _OUR_BLOCK + r'attn.conv.fc.weight',
             lambda t: t.flatten(1)),
            (_BLOCK + r'attn\.(fc\.bias|dep_conv\.weight)',
             _OUR_BLOCK + r'attn.conv.\3', None),
            (_BLOCK + r'attn\.(rate1|rate2)', _OUR_BLOCK + r'attn.rates.\3',
             None),
        ],
        required=_SWIN_REQUIRED,
        block_pattern=_BLOCK,
        block_required=_SWIN_BLOCK_REQUIRED + _ACMIX_BLOCK_REQUIRED),
    Layout(
        name='swin_official',
        description='official Swin Transformer (microsoft/Swin-Transformer); '
        'the ACmix parts start at their initialisation, rates at (1, 0)',
        rules=_SWIN_RULES,
        required=_SWIN_REQUIRED,
        block_pattern=_BLOCK,
        block_required=_SWIN_BLOCK_REQUIRED,
        finalize=_attention_only_rates),
    Layout(**PVT_V1_LAYOUT, finalize=_attention_only_rates),
    Layout(**RESNET_ACMIX_LAYOUT_ARGS),
]


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


def _listing(keys: Sequence[str], limit: int = 10) -> str:
    shown = ', '.join(keys[:limit])
    more = f' and {len(keys) - limit} more' if len(keys) > limit else ''
    return f'{len(keys)} ({shown}{more})' if keys else 'none'


def convert_state_dict(state: Dict[str, Tensor]) -> Tuple[dict, str]:
    """Convert official weights to this project's layout.

    Returns:
        tuple: the converted state dict and the name of the layout found.

    Raises:
        ConversionError: ``state`` fits no layout; the message names the
            missing and unexpected keys for the closest one.
    """
    checks = [(layout, *layout.check(state)) for layout in LAYOUTS]
    for layout, missing, unexpected in checks:
        if not missing and not unexpected:
            return layout.convert(state), layout.name
    if all(key.startswith(('backbone.', 'neck.', 'head.')) for key in state):
        raise ConversionError(
            'the checkpoint is already in this project\'s layout '
            '(backbone.*, head.*): use it as it is')
    layout, missing, unexpected = min(
        checks, key=lambda c: len(c[1]) + len(c[2]))
    known = ', '.join(f'{lay.name} ({lay.description})' for lay in LAYOUTS)
    raise ConversionError(
        f'the checkpoint matches no known layout. Closest is '
        f'{layout.name!r}: missing keys: {_listing(missing)}; unexpected '
        f'keys: {_listing(unexpected)}. Known layouts: {known}.')


# what to keep of the source checkpoint besides its weights
_SOURCE_META_KEYS = ('config', 'epoch', 'max_accuracy', 'meta')


def check_destination(src: str, dst: str, overwrite: bool = False) -> None:
    """Refuse to write ``dst`` over the source ``src`` (whatever the
    spelling: symlinks, ``..``, hard links) or, unless ``overwrite``, over
    an existing file.

    Raises:
        ConversionError: ``dst`` must not be written.
    """
    if not osp.exists(dst):
        return
    if osp.isdir(dst):
        raise ConversionError(f'destination {dst} is a directory; give the '
                              'path of the file to write')
    if osp.exists(src) and osp.samefile(src, dst):
        raise ConversionError(f'destination {dst} is the source {src}; the '
                              'converter never overwrites its source')
    if not overwrite:
        raise ConversionError(f'destination {dst} exists; pass --force '
                              '(overwrite=True) to replace it')


def convert_checkpoint(src: str, dst: str, overwrite: bool = False) -> str:
    """Convert the official checkpoint file ``src`` and save it to ``dst``
    as ``{'state_dict': ..., 'meta': ...}`` holding plain types only.

    ``dst``'s folder is created if needed, and ``dst`` is written
    atomically (:func:`mmacmix.utils.fileio.atomic_open`): it is the
    complete converted file or, after a failure, what it was before.

    Args:
        src (str): The official checkpoint.
        dst (str): Where to write the converted one.
        overwrite (bool): Replace an existing ``dst`` (never ``src``).
            Defaults to False.

    Returns:
        str: the name of the layout found.

    Raises:
        ConversionError: ``src`` cannot be read or converted, or ``dst``
            must not be written (see :func:`check_destination`).
    """
    src, dst = str(src), str(dst)
    check_destination(src, dst, overwrite)
    checkpoint = load_official_checkpoint(src)
    try:
        state, layout = convert_state_dict(extract_state_dict(checkpoint))
    except ConversionError as err:
        raise ConversionError(f'source {src}: {err}') from None
    meta = dict(
        converted_from=src,
        layout=layout,
        source_meta=to_plain({
            k: checkpoint[k]
            for k in _SOURCE_META_KEYS if k in checkpoint
        }))
    with atomic_open(dst) as f:
        torch.save(dict(state_dict=state, meta=meta), f)
    return layout
