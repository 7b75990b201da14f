"""ACmix with spatial-reduction attention, the operator of PVT-ACmix."""
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .acmix import ACmixOperator
from .exporting import is_exporting
from .fast_forms import sum_over_maps


def upsample_to_patches(kv: Tensor, ratio: int, height: int,
                        width: int) -> Tensor:
    """Give every pixel of an ``height x width`` map the entry of the
    reduction patch that contains it.

    ``kv`` is ``(B, h, w, C)``, the output of a ``ratio x ratio``
    convolution with stride ``ratio`` (so ``h = height // ratio``); each entry
    is repeated over its ``ratio x ratio`` patch, and the rows and columns
    the reduction dropped (``height % ratio``, ``width % ratio``) take
    those of the last patch. Returns ``(B, height, width, C)``.
    """
    batch, rows, cols, channels = kv.shape
    up = kv[:, :, None, :, None].expand(batch, rows, ratio, cols, ratio,
                                        channels)
    up = up.reshape(batch, rows * ratio, cols * ratio, channels)
    # while exporting the sizes may be symbolic: pad (maybe by nothing)
    if is_exporting() or (rows * ratio, cols * ratio) != (height, width):
        up = F.pad(
            up.permute(0, 3, 1, 2),
            (0, width - cols * ratio, 0, height - rows * ratio),
            mode='replicate').permute(0, 2, 3, 1)
    return up


def heads_last(x: Tensor, head_dims: int) -> Tensor:
    """``(..., n * head_dims)`` to ``(..., head_dims, n)``: the channel index
    first, then the head (a view)."""
    return x.unflatten(-1, (-1, head_dims)).transpose(-1, -2)


class SpatialReductionACmix(ACmixOperator):
    """ACmix operator with PVT's spatial-reduction attention (PVT-ACmix).

    Stage I is PVT's: the query ``q = Linear(C, C)(x)`` at full resolution
    and the key and value ``kv = Linear(C, 2C)(norm(sr(x)))`` of the map
    reduced by a ``sr_ratio x sr_ratio`` convolution with that stride (for
    ``sr_ratio`` 1, of ``x`` itself). Stage II:

    * attention path: PVT's multi-head attention of the full-resolution
      queries over the reduced keys and values, then ``proj``;
    * convolution path (:class:`mmacmix.layers.ACmixConvPath`, bypassing
      ``proj`` as in the official ACmix): the full-resolution queries and
      the reduced keys and values upsampled back to ``H x W``, each pixel
      taking those of the reduction patch that contains it
      (:func:`upsample_to_patches`). No projection is computed twice, so
      the path costs only its fully connected layer (the keys' and values'
      share of it at the reduced resolution) and group convolution.

    ``out = rate1 * attention + rate2 * conv``. With ``rate1 = 1`` and
    ``rate2 = 0`` this is PVT's spatial-reduction attention.

    Args:
        embed_dims (int): Channels ``C`` of the input and output.
        num_heads (int): Number of attention heads.
        sr_ratio (int): Spatial-reduction ratio of the keys and values.
            Defaults to 1.
        qkv_bias (bool): Whether the q/kv projections have a bias.
            Defaults to True.
        attn_drop (float): Dropout rate on the attention weights.
            Defaults to 0.
        kernel_conv (int): Kernel size of the convolution path. Defaults to 3.
        norm_eps (float): Epsilon of the LayerNorm after the reduction.
            Defaults to 1e-6.
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 sr_ratio: int = 1,
                 qkv_bias: bool = True,
                 attn_drop: float = 0.,
                 kernel_conv: int = 3,
                 norm_eps: float = 1e-6):
        super().__init__()
        if embed_dims % num_heads:
            raise ValueError(f'embed_dims ({embed_dims}) must be divisible by '
                             f'num_heads ({num_heads})')
        if sr_ratio < 1:
            raise ValueError(f'sr_ratio must be at least 1, got {sr_ratio}')
        self.num_heads = num_heads
        self.head_dims = embed_dims // num_heads
        self.sr_ratio = sr_ratio
        self.attn_drop = attn_drop

        # stage I, shared by both paths
        self.q = nn.Linear(embed_dims, embed_dims, bias=qkv_bias)
        self.kv = nn.Linear(embed_dims, 2 * embed_dims, bias=qkv_bias)
        if sr_ratio > 1:
            self.sr = nn.Conv2d(
                embed_dims, embed_dims, sr_ratio, stride=sr_ratio)
            self.norm = nn.LayerNorm(embed_dims, eps=norm_eps)
        # attention path
        self.proj = nn.Linear(embed_dims, embed_dims)
        self.add_conv_path(num_heads, self.head_dims, kernel_conv)

    def forward(self, x: Tensor) -> Tensor:
        """Map ``(B, H, W, C)`` to ``(B, H, W, C)``; ``H`` and ``W`` must be
        at least ``sr_ratio``."""
        height, width = x.shape[1:3]
        q = self.q(x)
        if self.sr_ratio > 1:
            reduced = self.sr(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
            kv = self.kv(self.norm(reduced))  # (B, h, w, 2C)
        else:
            kv = self.kv(x)

        conv_args = self.conv_rate_and_bias(self.proj)
        if self.conv.fold_fc and self.num_heads == 1:
            conv = sum_over_maps(
                self.conv, self._full_resolution_maps(q, kv, height, width),
                *conv_args)
        elif self.conv.fold_fc:
            conv = self.conv(
                self._full_resolution_qkv(q, kv, height, width), *conv_args)
        else:
            conv = self.conv.shift_and_sum(
                self._conv_maps(q, kv, height, width), *conv_args)
        return self.mix(
            self._attention(q, kv), conv.permute(0, 2, 3, 1), self.proj)

    def _conv_maps(self, q: Tensor, kv: Tensor, height: int,
                   width: int) -> Tensor:
        """``fc`` of the convolution path over the queries ``(B, H, W, C)``
        and the keys and values ``(B, h, w, 2C)`` upsampled to ``H x W``;
        returns ``(B, H, W, head_dims, k*k)``.

        ``fc`` acts on each pixel alone and the upsampling only copies
        pixels, so the keys' and values' share of ``fc`` runs at the reduced
        resolution and its output is upsampled: the same maps as ``fc`` of
        the upsampled keys and values, for ``1 / sr_ratio**2`` of the cost.
        """
        heads, head_dims = self.num_heads, self.head_dims
        weight = self.conv.fc.weight  # (k*k, 3 * heads): q, k, v heads
        maps = F.linear(heads_last(q, head_dims), weight[:, :heads],
                        self.conv.fc.bias)
        kv_maps = F.linear(heads_last(kv, head_dims), weight[:, heads:])
        if self.sr_ratio > 1:
            kv_maps = upsample_to_patches(
                kv_maps.flatten(3), self.sr_ratio, height,
                width).reshape(maps.shape)
        return maps + kv_maps

    def _full_resolution_qkv(self, q: Tensor, kv: Tensor, height: int,
                             width: int) -> Tensor:
        """The queries ``(B, H, W, C)`` and the keys and values
        ``(B, h, w, 2C)`` upsampled to ``H x W``, as the convolution path's
        ``(B, 3 * heads, head_dims, H, W)`` input, d-major in memory (what
        its folded form reads without a copy)."""
        if self.sr_ratio > 1:
            kv = upsample_to_patches(kv, self.sr_ratio, height, width)
        head_dims = self.head_dims
        maps = torch.cat(
            [heads_last(q, head_dims), heads_last(kv, head_dims)], -1)
        return maps.permute(0, 4, 3, 1, 2)

    def _full_resolution_maps(self, q: Tensor, kv: Tensor, height: int,
                              width: int) -> list:
        """With one head: the query ``(B, H, W, C)`` and the key and value
        ``(B, h, w, 2C)``, upsampled to ``H x W`` one by one, as three
        ``(B, C, H, W)`` channels-last maps (no concatenation)."""
        maps = [q]
        for part in kv.chunk(2, -1):
            if self.sr_ratio > 1:
                part = upsample_to_patches(part, self.sr_ratio, height, width)
            maps.append(part)
        return [part.permute(0, 3, 1, 2) for part in maps]

    def _attention(self, q: Tensor, kv: Tensor) -> Tensor:
        """Multi-head attention of the queries ``(B, H, W, C)`` over the keys
        and values ``(B, h, w, 2C)``; returns ``(B, H, W, C)`` (before
        ``proj``)."""
        batch, height, width, channels = q.shape
        heads, head_dims = self.num_heads, self.head_dims
        q = q.view(batch, height * width, heads, head_dims).transpose(1, 2)
        k, v = kv.reshape(batch, -1, 2, heads,
                          head_dims).permute(2, 0, 3, 1, 4).unbind(0)
        out = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.attn_drop if self.training else 0.)
        return out.transpose(1, 2).reshape(batch, height, width, channels)
