"""Pieces the backbone families share."""
from typing import Callable, List, Sequence, Union

import torch.nn as nn
import torch.utils.checkpoint as cp
from mmengine.model import BaseModule
from torch import Tensor

from mmacmix.layers import ACmixConvPath


def drop_path(x: Tensor, rate: float, training: bool) -> Tensor:
    """Stochastic depth: drop whole residual branches per sample."""
    if rate == 0. or not training:
        return x
    keep = x.new_empty((x.shape[0], ) + (1, ) * (x.ndim - 1)).bernoulli_(
        1 - rate)
    return x * keep / (1 - rate)


class Mlp(nn.Module):
    """Linear, GELU, Linear, with dropout after each Linear."""

    def __init__(self, embed_dims: int, hidden_dims: int, drop: float = 0.):
        super().__init__()
        self.fc1 = nn.Linear(embed_dims, hidden_dims)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dims, embed_dims)
        self.drop = nn.Dropout(drop)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class PatchEmbed(nn.Module):
    """Non-overlapping ``patch_size`` patches of an NCHW map to tokens
    ``(B, H // p, W // p, C)``: a strided convolution and a LayerNorm. A
    remainder smaller than a patch is dropped."""

    def __init__(self,
                 in_channels: int,
                 embed_dims: int,
                 patch_size: int,
                 norm_eps: float = 1e-5):
        super().__init__()
        self.patch_size = patch_size
        self.projection = nn.Conv2d(
            in_channels, embed_dims, patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(embed_dims, eps=norm_eps)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(self.projection(x).permute(0, 2, 3, 1))


class PreNormBlock(BaseModule):
    """Pre-norm transformer block around the token mixer ``attn``:
    ``x + drop_path(drop(attn(norm1(x))))``, then
    ``x + drop_path(mlp(norm2(x)))``.

    Args:
        embed_dims (int): Channels of the block.
        attn (nn.Module): The token mixer, an ACmix operator.
        mlp_ratio (float): Hidden channels of the MLP over ``embed_dims``.
        drop_rate (float): Dropout after ``attn`` and in the MLP.
        drop_path_rate (float): Stochastic depth rate of both branches.
        with_cp (bool): Use gradient checkpointing to save memory.
        norm_eps (float): Epsilon of both LayerNorms. Defaults to 1e-5.
        init_cfg (dict, optional): Initialization config. Defaults to None.
    """

    def __init__(self,
                 embed_dims: int,
                 attn: nn.Module,
                 mlp_ratio: float,
                 drop_rate: float,
                 drop_path_rate: float,
                 with_cp: bool,
                 norm_eps: float = 1e-5,
                 init_cfg=None):
        super().__init__(init_cfg)
        self.drop_path_rate = drop_path_rate
        self.with_cp = with_cp
        self.norm1 = nn.LayerNorm(embed_dims, eps=norm_eps)
        self.attn = attn
        self.drop = nn.Dropout(drop_rate)
        self.norm2 = nn.LayerNorm(embed_dims, eps=norm_eps)
        self.mlp = Mlp(embed_dims, int(embed_dims * mlp_ratio), drop_rate)

    def _forward(self, x: Tensor) -> Tensor:
        x = x + drop_path(
            self.drop(self.attn(self.norm1(x))), self.drop_path_rate,
            self.training)
        return x + drop_path(
            self.mlp(self.norm2(x)), self.drop_path_rate, self.training)

    def forward(self, x: Tensor) -> Tensor:
        if self.with_cp and x.requires_grad:
            return cp.checkpoint(self._forward, x, use_reentrant=False)
        return self._forward(x)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def resolve_out_indices(out_indices: Sequence[int], num_stages: int,
                        owner: str) -> List[int]:
    """``out_indices`` as non-negative stage indices (negative ones count
    from the last stage).

    Raises:
        TypeError: ``out_indices`` is no sequence of ints (e.g. a bare
            ``3`` for ``(3, )``).
        ValueError: it is empty, repeats a stage or names one out of range.
    """
    if not isinstance(out_indices, Sequence) or isinstance(
            out_indices, str) or not all(_is_int(i) for i in out_indices):
        raise TypeError(
            f'{owner}: out_indices must be a sequence of stage indices, '
            f'e.g. ({num_stages - 1}, ), got {out_indices!r}')
    allowed = (f'indices in -{num_stages}..{num_stages - 1} ({num_stages} '
               'stages)')
    if not out_indices:
        raise ValueError(f'{owner}: out_indices must name at least one '
                         f'stage ({allowed}), got {out_indices!r}')
    if any(not -num_stages <= i < num_stages for i in out_indices):
        raise ValueError(f'{owner}: out_indices must hold {allowed}, got '
                         f'{out_indices!r}')
    resolved = [i % num_stages for i in out_indices]
    if len(set(resolved)) != len(resolved):
        raise ValueError(f'{owner}: out_indices names a stage twice: '
                         f'{out_indices!r}')
    return resolved


def check_frozen_stages(frozen_stages: int, num_stages: int,
                        owner: str) -> None:
    """``frozen_stages`` is an int in ``-1..num_stages``.

    Raises:
        TypeError: it is not an int.
        ValueError: it is out of range.
    """
    allowed = (f'an int in -1..{num_stages} (-1: nothing, 0: the stem, '
               f'n: the stem and the first n of {num_stages} stages)')
    if not _is_int(frozen_stages):
        raise TypeError(f'{owner}: frozen_stages must be {allowed}, got '
                        f'{frozen_stages!r}')
    if not -1 <= frozen_stages <= num_stages:
        raise ValueError(f'{owner}: frozen_stages must be {allowed}, got '
                         f'{frozen_stages}')


def check_depth(depth: int, choices, owner: str) -> None:
    """``depth`` is one of ``choices`` (ints).

    Raises:
        TypeError: it is not an int (e.g. ``'50'``).
        ValueError: it is another int.
    """
    if _is_int(depth) and depth in choices:
        return
    error = ValueError if _is_int(depth) else TypeError
    raise error(f'{owner}: depth must be one of the ints {sorted(choices)}, '
                f'got {depth!r}')


def check_input(x: Tensor, owner: str, in_channels: int,
                min_size: int = 1) -> None:
    """``x`` is a non-empty ``(B, in_channels, H, W)`` batch of at least
    ``min_size`` pixels on both sides.

    Raises:
        ValueError: naming the shape expected and the one given.
    """
    shape = tuple(x.shape)
    if x.dim() != 4 or x.shape[1] != in_channels:
        hint = ' (add a batch dim: x[None])' if x.dim() == 3 else ''
        raise ValueError(f'{owner} expects inputs of shape (B, '
                         f'{in_channels}, H, W), got {shape}{hint}')
    if x.shape[0] == 0:
        raise ValueError(f'{owner} expects a batch of at least one image, '
                         f'got {shape}')
    if min(x.shape[-2:]) < min_size:
        raise ValueError(f'{owner} needs inputs of at least {min_size}x'
                         f'{min_size} pixels, got {shape[2]}x{shape[3]}')


def resolve_arch(arch: Union[str, dict], arch_zoo: dict, required: set,
                 owner: str) -> dict:
    """An ``arch_zoo`` entry by (case-insensitive) name, or a custom dict
    with exactly the ``required`` keys whose per-stage lists share one
    length.

    Raises:
        TypeError: ``arch`` is neither a str nor a dict.
        ValueError: an unknown name, or a dict with other keys or lists of
            different lengths.
    """
    allowed = (f'one of {sorted(arch_zoo)} or a dict with the keys '
               f'{sorted(required)}')
    if isinstance(arch, str):
        if arch.lower() not in arch_zoo:
            raise ValueError(f'{owner}: arch must be {allowed}, got '
                             f'{arch!r}')
        return arch_zoo[arch.lower()]
    if not isinstance(arch, dict):
        raise TypeError(f'{owner}: arch must be {allowed}, got {arch!r}')
    if set(arch) != required:
        raise ValueError(f'{owner}: a custom arch must be a dict with '
                         f'exactly the keys {sorted(required)}, got '
                         f'{arch!r}')
    lengths = {len(v) for v in arch.values() if isinstance(v, (list, tuple))}
    if len(lengths) > 1:
        raise ValueError(f'{owner}: the arch entries differ in length: '
                         f'{arch!r}')
    return arch


def init_transformer_weights(model: nn.Module,
                             init_other: Callable[[nn.Module], None]) -> None:
    """Swin's and PVT's initialisation: truncated-normal ``Linear``, unit
    ``LayerNorm``, ``init_other`` for every other module (position tables),
    in module order; the ACmix convolution paths keep their own
    (PyTorch-default ``fc``, shift-kernel ``dep_conv``)."""
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        else:
            init_other(m)
    for m in model.modules():
        if isinstance(m, ACmixConvPath):
            m.reset_parameters()
