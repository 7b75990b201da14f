"""The torch versions mmacmix supports (torch alone).

:data:`~mmacmix.version.TORCH_MIN` is the oldest; a feature that needs a
newer torch calls :func:`require_torch` where it is used, so an old torch
fails there with the feature and the version in the message instead of an
``AttributeError`` deep in torch.
"""
import re
from typing import Optional, Tuple

import torch

from ..version import TORCH_MIN


class TorchVersionError(RuntimeError):
    """The installed torch is too old for a feature."""


def parse_version(version: str) -> Tuple[int, int]:
    """``(major, minor)`` of a torch version string such as
    ``'2.13.0+cpu'`` or ``'2.8.0a0+git1234'``."""
    match = re.match(r'(\d+)\.(\d+)', version)
    if match is None:
        raise ValueError(f'not a torch version: {version!r}')
    return int(match.group(1)), int(match.group(2))


def format_version(version: Tuple[int, int]) -> str:
    return '.'.join(map(str, version))


def require_torch(feature: str,
                  needed: Tuple[int, int] = TORCH_MIN,
                  installed: Optional[str] = None) -> None:
    """Raise :class:`TorchVersionError` naming ``feature``, the ``needed``
    ``(major, minor)`` and the ``installed`` version (default: this torch)
    if the installed torch is older than ``needed``."""
    installed = torch.__version__ if installed is None else installed
    if parse_version(installed) < tuple(needed):
        raise TorchVersionError(
            f'{feature} needs torch>={format_version(needed)}, but torch '
            f'{installed} is installed; upgrade torch (mmacmix supports '
            f'torch>={format_version(TORCH_MIN)})')
