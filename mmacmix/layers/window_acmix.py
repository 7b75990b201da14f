"""ACmix with (shifted) window attention, the operator of Swin-ACmix."""
import functools
import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .acmix import ACmixConvPath, MixingRates, d_major_order

# the additive mask value of the official Swin code (and of mmdet's Swin)
_MASKED = -100.0


def relative_position_index(window_size: int) -> Tensor:
    """Index into the ``(2*ws-1)**2`` relative-position bias table for every
    (query, key) pair of a window, ``(ws*ws, ws*ws)`` (as in Swin)."""
    coords = torch.stack(
        torch.meshgrid(
            torch.arange(window_size), torch.arange(window_size),
            indexing='ij')).flatten(1)  # (2, N)
    relative = (coords[:, :, None] - coords[:, None, :]) + (window_size - 1)
    return relative[0] * (2 * window_size - 1) + relative[1]


@functools.lru_cache(maxsize=64)
def shifted_window_mask(height: int, width: int, window_size: int,
                        shift_size: int, device: torch.device) -> Tensor:
    """Additive mask ``(num_windows, N, N)`` that keeps the windows of a map
    cyclically shifted by ``shift_size`` from attending across the seams.

    ``height`` and ``width`` are those of the window-padded map. Cached per
    size, so a forward pass creates no mask.
    """
    # created outside inference mode so that a mask first built during
    # inference can still be used in training
    with torch.inference_mode(False):
        region = torch.zeros(height, width, device=device)
        slices = (slice(0, -window_size), slice(-window_size, -shift_size),
                  slice(-shift_size, None))
        for i, rows in enumerate(slices):
            for j, cols in enumerate(slices):
                region[rows, cols] = i * 3 + j
        region = region.view(height // window_size, window_size,
                             width // window_size, window_size)
        region = region.transpose(1, 2).reshape(-1, window_size**2)
        differs = region[:, :, None] != region[:, None, :]
        return torch.zeros(differs.shape, device=device).masked_fill(
            differs, _MASKED)


class WindowACmix(nn.Module):
    """ACmix operator with (shifted) window self-attention (Swin-ACmix).

    ``out = rate1 * proj(window_attention(qkv)) + rate2 * conv_path(qkv)``
    with ``qkv = Linear(C, 3C)(x)`` shared by both paths; the convolution
    path bypasses ``proj``, as in the official code.

    Sizes that are not multiples of ``window_size`` are handled as in
    mmdet's Swin: the attention path runs on the map zero-padded at the
    bottom and right. The convolution path never sees that padding: it runs
    on the real pixels, and its 3x3 convolution zero-pads at the border. In
    shifted blocks both paths work on the cyclically shifted map and their
    outputs are rolled back, as in the official code (where no padding is
    needed the result is that of the official model). As in the official
    code, a map that fits in a single window is not shifted.

    Args:
        embed_dims (int): Channels ``C`` of the input and output.
        num_heads (int): Number of attention heads.
        window_size (int): Side of the square attention windows.
        shift_size (int): Cyclic shift of the windows; 0 for regular windows.
            Defaults to 0.
        qkv_bias (bool): Whether the q/k/v projection has a bias.
            Defaults to True.
        attn_drop (float): Dropout rate on the attention weights.
            Defaults to 0.
        kernel_conv (int): Kernel size of the convolution path. Defaults to 3.
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 window_size: int,
                 shift_size: int = 0,
                 qkv_bias: bool = True,
                 attn_drop: float = 0.,
                 kernel_conv: int = 3):
        super().__init__()
        if embed_dims % num_heads:
            raise ValueError(f'embed_dims ({embed_dims}) must be divisible by '
                             f'num_heads ({num_heads})')
        if not 0 <= shift_size < window_size:
            raise ValueError(f'shift_size ({shift_size}) must be in '
                             f'[0, window_size={window_size})')
        self.num_heads = num_heads
        self.head_dims = embed_dims // num_heads
        self.window_size = window_size
        self.shift_size = shift_size
        self.attn_drop = attn_drop

        # stage I, shared by both paths, computed in d-major order, which
        # both paths read without a copy
        self.qkv = nn.Linear(embed_dims, 3 * embed_dims, bias=qkv_bias)
        self.register_buffer(
            'd_major', d_major_order(3 * num_heads, self.head_dims),
            persistent=False)
        # attention path
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * window_size - 1)**2, num_heads))
        self.register_buffer(
            'relative_position_index',
            relative_position_index(window_size).flatten(),
            persistent=False)
        self.proj = nn.Linear(embed_dims, embed_dims)
        # convolution path and mixing
        self.conv = ACmixConvPath(num_heads, self.head_dims, kernel_conv)
        self.rates = MixingRates()

    def init_weights(self) -> None:
        """Keep the shift kernels through mmengine's ``init_weights``."""
        self.conv.init_weights()

    def forward(self, x: Tensor) -> Tensor:
        """Map ``(B, H, W, C)`` to ``(B, H, W, C)``."""
        batch, height, width, _ = x.shape
        ws = self.window_size
        # shifting a map that fits in one window would only cut that window
        shift = self.shift_size if height > ws or width > ws else 0
        padded_h = math.ceil(height / ws) * ws
        padded_w = math.ceil(width / ws) * ws
        padded = (padded_h, padded_w) != (height, width)
        if padded:
            x = F.pad(x, (0, 0, 0, padded_w - width, 0, padded_h - height))
        elif shift:
            # both paths see the same shifted map: shift the C input
            # channels rather than the projections
            x = torch.roll(x, (-shift, -shift), (1, 2))

        qkv = self._project(x)
        conv_in = qkv[:, :height, :width]  # the real pixels only
        if shift and padded:
            # the attention's windows shift over the padded map, the
            # convolution path over the real pixels
            qkv = torch.roll(qkv, (-shift, -shift), (1, 2))
            conv_in = torch.roll(conv_in, (-shift, -shift), (1, 2))

        attention = self.proj(self._window_attention(qkv, shift))
        conv = self.conv(
            conv_in.view(batch, height, width, self.head_dims,
                         3 * self.num_heads).permute(0, 4, 3, 1, 2))
        conv = conv.permute(0, 2, 3, 1)  # (B, H, W, C)
        if not padded:
            out = self.rates(attention, conv)
            return torch.roll(out, (shift, shift), (1, 2)) if shift else out
        if shift:
            attention = torch.roll(attention, (shift, shift), (1, 2))
            conv = torch.roll(conv, (shift, shift), (1, 2))
        return self.rates(attention[:, :height, :width], conv)

    def _project(self, x: Tensor) -> Tensor:
        """Stage I: ``qkv`` ``(B, Hp, Wp, 3C)`` in d-major order."""
        order = self.d_major
        bias = None if self.qkv.bias is None else self.qkv.bias[order]
        return F.linear(x, self.qkv.weight[order], bias)

    def _window_attention(self, qkv: Tensor, shift: int) -> Tensor:
        """Multi-head self-attention within the windows of ``qkv`` (d-major
        channels) shifted by ``shift``, ``(B, Hp, Wp, 3C)`` to
        ``(B, Hp, Wp, C)`` (before ``proj``)."""
        batch, height, width, _ = qkv.shape
        ws, heads, head_dims = self.window_size, self.num_heads, self.head_dims
        rows, cols = height // ws, width // ws
        # (3, B * windows, heads, ws * ws, head_dims)
        q, k, v = qkv.view(batch, rows, ws, cols, ws, head_dims, 3,
                           heads).permute(6, 0, 1, 3, 7, 2, 4, 5).reshape(
                               3, batch * rows * cols, heads, ws * ws,
                               head_dims).unbind(0)

        # explicit products: on CPU, faster than scaled_dot_product_attention
        # with an additive mask (measured, train and inference), and the
        # bias and shift masks broadcast over the batch without a copy
        logits = (q * head_dims**-0.5) @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[
            self.relative_position_index].view(ws * ws, ws * ws,
                                               heads).permute(2, 0, 1)
        logits = logits.view(batch, rows * cols, heads, ws * ws,
                             ws * ws) + bias.to(logits.dtype)
        if shift:
            window_mask = shifted_window_mask(height, width, ws, shift,
                                              qkv.device)
            logits = logits + window_mask[:, None].to(logits.dtype)
        weights = logits.softmax(-1).flatten(0, 1)
        if self.training and self.attn_drop > 0:
            weights = F.dropout(weights, self.attn_drop)
        out = weights @ v

        # (B * windows, heads, N, head_dims) -> (B, Hp, Wp, heads * head_dims)
        out = out.view(batch, rows, cols, heads, ws, ws, head_dims)
        return out.permute(0, 1, 4, 2, 5, 3, 6).reshape(
            batch, height, width, heads * head_dims)
