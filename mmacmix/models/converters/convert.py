"""Conversion of official checkpoints to this project's layout (see
docs/checkpoints.md)."""
import os.path as osp
import re
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from mmacmix.utils.fileio import atomic_open

from .layout import Layout
from .loading import (ConversionError, extract_state_dict,
                      load_official_checkpoint)
from .pvt_v1_official import PVT_V1_LAYOUT
from .resnet_acmix_official import RESNET_ACMIX_LAYOUT
from .san_official import SAN_LAYOUT
from .swin_acmix_official import SWIN_ACMIX_LAYOUT
from .swin_mmpretrain import SWIN_MMPRETRAIN_LAYOUT
from .swin_official import SWIN_LAYOUT
from .swin_timm import SWIN_TIMM_LAYOUT

# in the order they are tried
LAYOUTS: List[Layout] = [
    SWIN_ACMIX_LAYOUT, SWIN_LAYOUT, SWIN_MMPRETRAIN_LAYOUT, SWIN_TIMM_LAYOUT,
    PVT_V1_LAYOUT, RESNET_ACMIX_LAYOUT, SAN_LAYOUT
]

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


def _listing(keys: Sequence[str], limit: int = 10) -> str:
    shown = ', '.join(keys[:limit])
    more = f' and {len(keys) - limit} more' if len(keys) > limit else ''
    return f'{len(keys)} ({shown}{more})' if keys else 'none'


def _is_ours(state: Dict[str, Tensor]) -> bool:
    """Whether ``state`` is already in this project's layout: its keys are
    under ``backbone.``, ``neck.`` and ``head.`` and it holds ACmix's mixing
    rates (``backbone.*.rates.rate1``), which every backbone here has and
    other models with these prefixes (mmpretrain's Swin, ...) do not."""
    return (all(key.startswith(('backbone.', 'neck.', 'head.'))
                for key in state) and
            any(re.fullmatch(r'backbone\..*\.rates\.rate1', key)
                for key in state))


def _layout_named(name: str) -> Layout:
    return next(layout for layout in LAYOUTS if layout.name == name)


def conversion_report(state: Dict[str, Tensor], layout: str) -> str:
    """What converting ``state`` (found as the layout named ``layout``)
    loads and what it leaves to the model's initialisation.

    Args:
        state (dict): The source weights.
        layout (str): The name of their layout.

    Returns:
        str: One line, e.g. ``loaded 173 of 173 source tensors; at their
        initialisation: nothing``.
    """
    found = _layout_named(layout)
    dropped = found.dropped(state)
    buffers = (f' (the other {len(dropped)}: buffers the model recomputes)'
               if dropped else '')
    return (f'loaded {len(state) - len(dropped)} of {len(state)} source '
            f'tensors{buffers}; at their initialisation: {found.at_init}')


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
    if _is_ours(state):
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


def convert_checkpoint(src: str,
                       dst: str,
                       overwrite: bool = False,
                       report: Optional[Callable[[str], None]] = None) -> str:
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
        report (callable, optional): Called with the line of
            :func:`conversion_report` (what was loaded, what was not).

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
        source = extract_state_dict(checkpoint)
        state, layout = convert_state_dict(source)
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
    if report:
        report(conversion_report(source, layout))
    return layout
