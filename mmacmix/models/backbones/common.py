"""Pieces the backbone families share."""
from typing import Callable, Iterable, List, Sequence, Union

import torch.nn as nn
import torch.utils.checkpoint as cp
from mmengine.model import BaseModule
from torch import Tensor
from torch.nn.modules.batchnorm import _BatchNorm

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


def resolve_out_indices(out_indices: Sequence[int],
                        num_stages: int) -> List[int]:
    """``out_indices`` as non-negative stage indices (negative ones count
    from the last stage); an index out of range raises ``ValueError``."""
    if any(not -num_stages <= i < num_stages for i in out_indices):
        raise ValueError(f'out_indices {out_indices} out of range for '
                         f'{num_stages} stages')
    return [i % num_stages for i in out_indices]


def resolve_arch(arch: Union[str, dict], arch_zoo: dict, required: set,
                 owner: str) -> dict:
    """An ``arch_zoo`` entry by (case-insensitive) name, or a custom dict
    with exactly the ``required`` keys whose per-stage lists share one
    length."""
    if isinstance(arch, str):
        if arch.lower() not in arch_zoo:
            raise ValueError(f'Unknown arch {arch!r} for {owner}; choose '
                             f'from {sorted(arch_zoo)} or pass a dict')
        return arch_zoo[arch.lower()]
    if not isinstance(arch, dict) or set(arch) != required:
        raise ValueError(f'A custom arch must be a dict with exactly the '
                         f'keys {sorted(required)}, got {arch!r}')
    lengths = {len(v) for v in arch.values() if isinstance(v, (list, tuple))}
    if len(lengths) > 1:
        raise ValueError(f'The arch entries differ in length: {arch!r}')
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


def batch_norms_to_eval(module: nn.Module) -> None:
    """Put every BatchNorm of ``module`` in eval mode (``norm_eval``: keep
    the statistics of the pretrained weights while fine-tuning)."""
    for m in module.modules():
        if isinstance(m, _BatchNorm):
            m.eval()
