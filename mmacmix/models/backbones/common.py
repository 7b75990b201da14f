"""Pieces the backbone families share."""
from typing import Iterable

import torch.nn as nn
import torch.utils.checkpoint as cp
from mmengine.model import BaseModule
from torch import Tensor


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


class PreNormBlock(BaseModule):
    """Pre-norm transformer block:
    ``x + drop_path(drop(attn(norm1(x))))``, then
    ``x + drop_path(mlp(norm2(x)))``. Subclasses build ``norm1``, ``attn``,
    ``drop``, ``norm2`` and ``mlp``.

    Args:
        drop_path_rate (float): Stochastic depth rate of both branches.
        with_cp (bool): Use gradient checkpointing to save memory.
        init_cfg (dict, optional): Initialization config. Defaults to None.
    """

    def __init__(self, drop_path_rate: float, with_cp: bool, init_cfg=None):
        super().__init__(init_cfg)
        self.drop_path_rate = drop_path_rate
        self.with_cp = with_cp

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


def freeze(modules: Iterable[nn.Module]) -> None:
    """Put ``modules`` in eval mode and stop their gradients
    (``frozen_stages``)."""
    for module in modules:
        module.eval()
        for param in module.parameters():
            param.requires_grad = False
