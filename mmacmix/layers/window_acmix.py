"""ACmix with (shifted) window attention, the operator of Swin-ACmix."""
import functools
import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .acmix import ACmixOperator
from .exporting import is_exporting
from .fast_forms import d_major_order

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


def shifted_window_mask(height: int, width: int, window_size: int,
                        shift_size: int, device: torch.device) -> Tensor:
    """Additive mask ``(num_windows, N, N)`` that keeps the windows of a map
    cyclically shifted by ``shift_size`` from attending across the seams.

    ``height`` and ``width`` are those of the window-padded map. Cached per
    size, so a forward pass creates no mask; while exporting, the sizes may
    be symbolic and ``shift_size`` a tensor: computed, not cached.
    """
    if is_exporting():
        return _shifted_window_mask(height, width, window_size, shift_size,
                                    device)
    # created outside inference mode so that a mask first built during
    # inference can still be used in training
    with torch.inference_mode(False):
        return _cached_shifted_window_mask(height, width, window_size,
                                           shift_size, device)


def _shifted_window_mask(height: int, width: int, window_size: int,
                         shift_size: int, device: torch.device) -> Tensor:
    ws = window_size
    cols = width // ws
    # the pixel of every window and position in it, from 1-d ranges (no
    # view: the sizes may be symbolic while exporting)
    windows = torch.arange(height // ws * cols, device=device)[:, None]
    position = torch.arange(ws * ws, device=device)

    def regions(index, size):
        # 0 before the last window, 1 in it before the shifted-in part, 2 in
        # that part
        return ((index >= size - ws).long() +
                (index >= size - shift_size).long())

    # (no remainder by the symbolic cols: the dynamo exporter cannot take it)
    row = torch.div(windows, cols, rounding_mode='floor')
    region = (regions(row * ws + position // ws, height) * 3 +
              regions((windows - row * cols) * ws + position % ws, width))
    differs = region[:, :, None] != region[:, None, :]
    return torch.zeros(differs.shape, device=device).masked_fill(
        differs, _MASKED)


_cached_shifted_window_mask = functools.lru_cache(maxsize=64)(
    _shifted_window_mask)


def _gather_rolled(x: Tensor, shift, sizes: tuple, periods: tuple) -> Tensor:
    """``x[:, (i + shift) % period]`` for ``i < size`` along dims 1 and 2
    (one ``(size, period)`` pair each): ``torch.roll(x, -shift)`` over
    ``period`` pixels, cropped to ``size``, as gathers, which exporters
    trace for symbolic sizes and a tensor ``shift``, and whose outputs are
    contiguous (a crop's strides would make the exported graph check the
    padding)."""
    for dim, (size, period) in enumerate(zip(sizes, periods), 1):
        index = torch.arange(size, device=x.device) + shift
        # into [0, period) (|shift| < period); comparisons rather than a
        # remainder, which the dynamo exporter cannot take by a symbolic
        # period
        index = index + ((index < 0).long() -
                         (index >= period).long()) * period
        x = x.index_select(dim, index)
    return x


class WindowACmix(ACmixOperator):
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
        self.add_conv_path(num_heads, self.head_dims, kernel_conv)

    def forward(self, x: Tensor) -> Tensor:
        """Map ``(B, H, W, C)`` to ``(B, H, W, C)``."""
        if is_exporting():
            return self._export_forward(x)
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

        mask = None
        if shift:
            mask = shifted_window_mask(padded_h, padded_w, ws, shift,
                                       qkv.device)
        attention = self._window_attention(qkv, mask)
        conv = self._conv_path(conv_in)
        if not padded:
            out = self.mix(attention, conv, self.proj)
            return torch.roll(out, (shift, shift), (1, 2)) if shift else out
        if shift:
            attention = torch.roll(attention, (shift, shift), (1, 2))
            conv = torch.roll(conv, (shift, shift), (1, 2))
        return self.mix(attention[:, :height, :width], conv, self.proj)

    def _export_forward(self, x: Tensor) -> Tensor:
        """:meth:`forward` while exporting. The sizes may be symbolic, so
        nothing branches on them: every map takes the padded path (padding
        by zero where none is needed), and the shift is a tensor (zero
        where the map fits in one window); rolls and crops are gathers and
        the mask is computed."""
        height, width = x.shape[1:3]
        ws = self.window_size
        # multiples of ws by construction, which symbolic views rely on
        padded = padded_h, padded_w = ((height + ws - 1) // ws * ws,
                                       (width + ws - 1) // ws * ws)
        qkv = self._project(
            F.pad(x, (0, 0, 0, padded_w - width, 0, padded_h - height)))
        real = (height, width)
        shift, mask = 0, None
        if self.shift_size:
            last_h = torch.arange(padded_h, device=x.device)[-1]
            last_w = torch.arange(padded_w, device=x.device)[-1]
            shift = ((last_h >= ws) | (last_w >= ws)).long() * self.shift_size
            mask = shifted_window_mask(padded_h, padded_w, ws, shift,
                                       x.device)
        # as in forward: the attention's windows shift over the padded map,
        # the convolution path over the real pixels
        conv = self._conv_path(_gather_rolled(qkv, shift, real, real))
        attention = self._window_attention(
            _gather_rolled(qkv, shift, padded, padded), mask)
        return self.mix(
            _gather_rolled(attention, -shift, real, padded),
            _gather_rolled(conv, -shift, real, real), self.proj)

    def _conv_path(self, qkv: Tensor) -> Tensor:
        """The convolution path on the projections ``(B, H, W, 3C)``
        (d-major channels), ``(B, H, W, C)``, ready for :meth:`mix`."""
        conv = self.conv(
            qkv.unflatten(-1, (self.head_dims, 3 * self.num_heads)).permute(
                0, 4, 3, 1, 2), *self.conv_rate_and_bias(self.proj))
        return conv.permute(0, 2, 3, 1)

    def _project(self, x: Tensor) -> Tensor:
        """Stage I: ``qkv`` ``(B, Hp, Wp, 3C)`` in d-major order."""
        order = self.d_major
        bias = None if self.qkv.bias is None else self.qkv.bias[order]
        return F.linear(x, self.qkv.weight[order], bias)

    def _window_attention(self, qkv: Tensor, mask: Tensor = None) -> Tensor:
        """Multi-head self-attention within the windows of ``qkv`` (d-major
        channels), ``(B, Hp, Wp, 3C)`` to ``(B, Hp, Wp, C)`` (before
        ``proj``), with the additive ``mask`` of shifted windows
        (:func:`shifted_window_mask`) if given."""
        batch, height, width, _ = qkv.shape
        ws, heads, head_dims = self.window_size, self.num_heads, self.head_dims
        rows, cols = height // ws, width // ws
        # (3, B * windows, heads, ws * ws, head_dims)
        q, k, v = qkv.view(batch, rows, ws, cols, ws, head_dims, 3,
                           heads).permute(6, 0, 1, 3, 7, 2, 4, 5).reshape(
                               3, batch * rows * cols, heads, ws * ws,
                               head_dims).unbind(0)

        # explicit products: on CPU, faster than scaled_dot_product_attention
        # with an additive mask (measured, train and inference); the bias
        # and the shift mask, summed first (per window, not per image),
        # broadcast over the batch, and the scale and the sum take one pass
        # over the logits
        bias = self.relative_position_bias_table[
            self.relative_position_index].view(ws * ws, ws * ws,
                                               heads).permute(2, 0, 1)
        if mask is not None:
            bias = bias + mask[:, None]
        logits = (q @ k.transpose(-2, -1)).view(batch, rows * cols, heads,
                                                ws * ws, ws * ws)
        logits = torch.add(
            bias.to(logits.dtype), logits, alpha=head_dims**-0.5)
        weights = logits.softmax(-1).flatten(0, 1)
        if self.training and self.attn_drop > 0:
            weights = F.dropout(weights, self.attn_drop)
        out = weights @ v

        # (B * windows, heads, N, head_dims) -> (B, Hp, Wp, heads * head_dims)
        out = out.view(batch, rows, cols, heads, ws, ws, head_dims)
        return out.permute(0, 1, 4, 2, 5, 3, 6).reshape(
            batch, height, width, heads * head_dims)
