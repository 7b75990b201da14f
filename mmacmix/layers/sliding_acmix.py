"""ACmix with sliding-window attention, the operator of ResNet-ACmix.

The attention is neighbourhood attention computed block by block with
matrix products, in a custom autograd function that keeps only its inputs
for the backward pass, instead of the official code's ``nn.Unfold`` (see
docs/design_resnet.md).
"""
import functools
import math
from typing import Callable, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .acmix import ACmixOperator, check_reflection_input
from .exporting import is_exporting
from .fast_forms import d_major_order
from .recompute import recompute_in_backward


def _block_size(stride: int, head_dims: int) -> int:
    """Query block side, the fastest measured on CPU: at stride 1, 4x4
    queries (10x10 halos) for small heads, where the logits dominate, and
    7x7 (13x13 halos) for larger ones; at stride 2, 4x4 (13x13 halos)."""
    if stride == 1 and head_dims > 32:
        return 7
    return 4


def _outside_window(block: int, stride: int, kernel_size: int,
                    device: torch.device, dtype: torch.dtype) -> Tensor:
    """``(block**2, halo**2)`` additive mask: -inf where a key of the halo
    lies outside the window of a query of the block, else 0 (adding it is
    several times faster than ``masked_fill_``). Cached, so a forward pass
    creates no mask; except under the JIT tracer (the FLOPs counter), where
    a tensor made inside one traced autograd Function cannot be reused by
    the next one."""
    if torch.jit.is_tracing():
        return _window_mask(block, stride, kernel_size, device, dtype)
    return _cached_window_mask(block, stride, kernel_size, device, dtype)


def _window_mask(block: int, stride: int, kernel_size: int,
                 device: torch.device, dtype: torch.dtype) -> Tensor:
    with torch.inference_mode(False):
        halo = stride * (block - 1) + kernel_size
        queries = stride * torch.arange(block, device=device)
        offset = torch.arange(halo, device=device)[None] - queries[:, None]
        inside = (offset >= 0) & (offset < kernel_size)  # (block, halo)
        inside = inside[:, None, :, None] & inside[None, :, None, :]
        outside = ~inside.reshape(block * block, halo * halo)
        return torch.zeros(outside.shape, device=device,
                           dtype=dtype).masked_fill_(outside, float('-inf'))


_cached_window_mask = functools.lru_cache(maxsize=32)(_window_mask)


def coordinate_grid(height: int, width: int, device: torch.device,
                    dtype: torch.dtype) -> Tensor:
    """``(1, 2, H, W)`` grid of pixel coordinates in [-1, 1], x (along the
    width) first, then y: the input of the positional encoding. Cached per
    size, except while exporting, where the sizes may be symbolic."""
    if is_exporting():
        # linspace would fix its number of steps: the same values (up to
        # round-off) from a range, which exporters trace for any size
        xs, ys = (torch.arange(n, device=device, dtype=dtype) *
                  (2 / (n - 1)) - 1 for n in (width, height))
        return _stack_grid(xs, ys)
    return _cached_coordinate_grid(height, width, device, dtype)


def _coordinate_grid(height: int, width: int, device: torch.device,
                     dtype: torch.dtype) -> Tensor:
    with torch.inference_mode(False):
        xs = torch.linspace(-1, 1, width, device=device, dtype=dtype)
        ys = torch.linspace(-1, 1, height, device=device, dtype=dtype)
        return _stack_grid(xs, ys)


def _stack_grid(xs: Tensor, ys: Tensor) -> Tensor:
    height, width = ys.shape[0], xs.shape[0]
    return torch.stack([
        xs[None].expand(height, width), ys[:, None].expand(height, width)
    ])[None]


_cached_coordinate_grid = functools.lru_cache(maxsize=64)(_coordinate_grid)


class _Geometry:
    """Sizes of the blocked computation for a ``(H, W)`` map.

    With ``dilation`` d > 1 (stride 1), the pixels of one phase
    ``(i % d, j % d)`` attend only to pixels of their phase: the padded map
    splits into ``d * d`` phase maps (``phases``), in each of which the
    dilated window is a plain ``kernel_size`` window, and the blocks tile
    the phase maps. Without dilation there is one phase, the map itself.
    """

    def __init__(self, height: int, width: int, head_dims: int,
                 kernel_size: int, stride: int, dilation: int = 1):
        self.pad = dilation * (kernel_size // 2)
        self.out_h = math.ceil(height / stride)
        self.out_w = math.ceil(width / stride)
        self.dilation = dilation
        # queries per phase (the longest phase; shorter ones get zeros)
        self.phase_h = math.ceil(self.out_h / dilation)
        self.phase_w = math.ceil(self.out_w / dilation)
        self.block = b = _block_size(stride, head_dims)
        self.step = stride * b  # input pixels between blocks
        self.halo = stride * (b - 1) + kernel_size
        self.blocks_h = math.ceil(self.phase_h / b)
        self.blocks_w = math.ceil(self.phase_w / b)
        # parts of a halo that tile without overlap (for the backward fold)
        self.parts = math.ceil(self.halo / self.step)
        # padded phase map: the reflection-padded keys, then zeros that only
        # blocked queries beyond the output ever see
        self.phase_map_h = (self.blocks_h + self.parts - 1) * self.step
        self.phase_map_w = (self.blocks_w + self.parts - 1) * self.step
        self.map_h = dilation * self.phase_map_h
        self.map_w = dilation * self.phase_map_w


def _padded(x: Tensor, pe: Tensor, g: _Geometry) -> Tensor:
    """``x - pe`` (pe may be None) reflection padded by ``g.pad`` and then
    zero padded to ``(map_h, map_w)``, channels last:
    ``(..., d, H, W) -> (N, map_h, map_w, d)``, ``N`` the leading dims
    flattened."""
    *lead, d, height, width = x.shape
    p = g.pad
    out = x.new_empty(*lead, g.map_h, g.map_w, d)
    inner = out[..., p:p + height, p:p + width, :]
    inner.copy_(x.movedim(-3, -1))
    if pe is not None:
        inner.sub_(pe.movedim(-3, -1))
    out = out.flatten(0, -4)
    # zeros right of and below the reflection padding
    out[:, :, width + 2 * p:] = 0
    out[:, height + 2 * p:, :width + 2 * p] = 0
    # reflect rows, then columns (which fills the corners)
    cols = slice(p, p + width)
    for i in range(1, p + 1):
        out[:, p - i, cols] = out[:, p + i, cols]
        out[:, p + height - 1 + i, cols] = out[:, p + height - 1 - i, cols]
    rows = slice(0, height + 2 * p)
    for i in range(1, p + 1):
        out[:, rows, p - i] = out[:, rows, p + i]
        out[:, rows, p + width - 1 + i] = out[:, rows, p + width - 1 - i]
    return out


def _unpad(grad: Tensor, height: int, width: int, g: _Geometry) -> Tensor:
    """Adjoint of :func:`_padded` (without ``pe``):
    ``(N, map_h, map_w, d) -> (N, H, W, d)`` (a view), modifies ``grad``."""
    p = g.pad
    rows = slice(0, height + 2 * p)
    for i in range(1, p + 1):
        grad[:, rows, p + i] += grad[:, rows, p - i]
        grad[:, rows, p + width - 1 - i] += grad[:, rows, p + width - 1 + i]
    cols = slice(p, p + width)
    for i in range(1, p + 1):
        grad[:, p + i, cols] += grad[:, p - i, cols]
        grad[:, p + height - 1 - i, cols] += grad[:, p + height - 1 + i, cols]
    return grad[:, p:p + height, p:p + width]


def _to_phases(padded: Tensor, g: _Geometry) -> Tensor:
    """``(N, map_h, map_w, d) -> (N * dilation**2, phase_map_h,
    phase_map_w, d)``: the phase maps (see :class:`_Geometry`), N-major."""
    if g.dilation == 1:
        return padded
    n, d, r = padded.shape[0], padded.shape[-1], g.dilation
    phases = padded.view(n, g.phase_map_h, r, g.phase_map_w, r, d)
    return phases.permute(0, 2, 4, 1, 3, 5).reshape(-1, g.phase_map_h,
                                                    g.phase_map_w, d)


def _from_phases(phases: Tensor, g: _Geometry) -> Tensor:
    """Inverse of :func:`_to_phases`."""
    if g.dilation == 1:
        return phases
    d, r = phases.shape[-1], g.dilation
    phases = phases.view(-1, r, r, g.phase_map_h, g.phase_map_w, d)
    return phases.permute(0, 3, 1, 4, 2, 5).reshape(-1, g.map_h, g.map_w, d)


def _halos(padded: Tensor, g: _Geometry) -> Tensor:
    """Every block's halo: ``(N, map_h, map_w, d) -> (N * phases * blocks,
    halo**2, d)``."""
    padded = _to_phases(padded, g)
    d = padded.shape[-1]
    halos = padded.unfold(1, g.halo, g.step).unfold(2, g.halo, g.step)
    halos = halos[:, :g.blocks_h, :g.blocks_w]  # (N, bh, bw, d, halo, halo)
    return halos.permute(0, 1, 2, 4, 5, 3).reshape(-1, g.halo**2, d)


def _fold_halos(halos: Tensor, n: int, g: _Geometry) -> Tensor:
    """Adjoint of :func:`_halos`: sum the halos back into the padded map."""
    d = halos.shape[-1]
    n = n * g.dilation**2
    halos = halos.view(n, g.blocks_h, g.blocks_w, g.halo, g.halo, d)
    out = halos.new_zeros(n, g.phase_map_h, g.phase_map_w, d)
    t = g.step
    for a in range(g.parts):
        rows = slice(a * t, min((a + 1) * t, g.halo))
        tile_h = out[:, a * t:(a + g.blocks_h) * t].view(
            n, g.blocks_h, t, g.phase_map_w, d)
        for c in range(g.parts):
            cols = slice(c * t, min((c + 1) * t, g.halo))
            tile = tile_h[:, :, :, c * t:(c + g.blocks_w) * t].view(
                n, g.blocks_h, t, g.blocks_w, t, d)
            tile[:, :, :rows.stop - rows.start, :, :cols.stop -
                 cols.start] += halos[:, :, :, rows, cols].permute(
                     0, 1, 3, 2, 4, 5)
    return _from_phases(out, g)


def _split_phases(x: Tensor, r: int) -> Tensor:
    """A view of ``(..., d, r * h, r * w)`` as its phases
    ``(..., r, r, d, h, w)``."""
    x = x.unflatten(-2, (-1, r)).unflatten(-1, (-1, r))
    lead = x.dim() - 5  # (..., d, h, r, w, r)
    return x.permute(*range(lead), lead + 2, lead + 4, lead, lead + 1,
                     lead + 3)


def _join_phases(x: Tensor) -> Tensor:
    """Inverse of :func:`_split_phases` (a copy)."""
    lead = x.dim() - 5  # (..., r, r, d, h, w)
    *dims, r, _, d, h, w = x.shape
    x = x.permute(*range(lead), lead + 2, lead + 3, lead, lead + 4, lead + 1)
    return x.reshape(*dims, d, h * r, w * r)


def _to_blocks(x: Tensor, g: _Geometry) -> Tensor:
    """Output-sized ``(..., d, Ho, Wo)`` (any strides) to query blocks
    ``(N * phases * blocks, block**2, d)``, zero padded."""
    b, d, r = g.block, x.shape[-3], g.dilation
    pad_h = r * g.blocks_h * b - g.out_h
    pad_w = r * g.blocks_w * b - g.out_w
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h))
    if r > 1:
        x = _split_phases(x, r)
    x = x.unflatten(-2, (g.blocks_h, b)).unflatten(-1, (g.blocks_w, b))
    lead = x.dim() - 5  # (..., d, bh, b, bw, b)
    x = x.permute(*range(lead), lead + 1, lead + 3, lead + 2, lead + 4, lead)
    return x.reshape(-1, b * b, d)


def _from_blocks(blocks: Tensor, out: Tensor, g: _Geometry) -> Tensor:
    """Adjoint of :func:`_to_blocks`: copy ``(N * blocks, block**2, d)``
    into ``out``, ``(..., d, Ho, Wo)`` (any strides)."""
    b, d, r = g.block, blocks.shape[-1], g.dilation
    blocks = blocks.view(-1, g.blocks_h, g.blocks_w, b, b, d).permute(
        0, 5, 1, 3, 2, 4).reshape(-1, d, g.blocks_h * b, g.blocks_w * b)
    if r > 1:
        blocks = _join_phases(blocks.unflatten(0, (-1, r, r)))
    blocks = blocks.unflatten(0, out.shape[:-3])
    return out.copy_(blocks[..., :g.out_h, :g.out_w])


# elements of the logits of one chunk of the batch (about 8 MB in float32):
# small enough to stay in cache and to bound the working memory
_CHUNK_LOGITS = 2**21


def _chunks(batch: int, heads: int, g: _Geometry):
    """Slices of the batch processed together."""
    per_sample = (heads * g.dilation**2 * g.blocks_h * g.blocks_w *
                  g.block**2 * g.halo**2)
    size = max(1, _CHUNK_LOGITS // per_sample)
    return [slice(i, min(i + size, batch)) for i in range(0, batch, size)]


def _weights(queries, keys, g, stride, kernel_size):
    logits = torch.bmm(queries, keys.transpose(1, 2))
    mask = _outside_window(g.block, stride, kernel_size, queries.device,
                           logits.dtype)
    return logits.add_(mask).softmax(-1)


class _SlidingWindowAttention(torch.autograd.Function):
    """See :func:`sliding_window_attention`. Saves only its inputs (the
    projections); the backward pass recomputes the attention weights and
    output block by block. Works on chunks of the batch."""

    @staticmethod
    def forward(ctx, qkv, pe, kernel_size, stride, scale, rate, dilation):
        batch, _, d, height, width = qkv.shape
        heads = qkv.shape[1] // 3
        g = _Geometry(height, width, d, kernel_size, stride, dilation)
        out = qkv.new_empty(batch, heads, d, g.out_h, g.out_w)
        for part in _chunks(batch, heads, g):
            q, k, v = qkv[part].chunk(3, 1)  # (b, heads, d, H, W) views
            keys = _halos(_padded(k, pe, g), g)
            values = _halos(_padded(v, None, g), g)
            queries = _to_blocks(q[..., ::stride, ::stride], g).mul_(scale)
            weights = _weights(queries, keys, g, stride, kernel_size)
            out_blocks = torch.bmm(weights, values)
            if rate is not None:
                out_blocks.mul_(rate)
            _from_blocks(out_blocks, out[part], g)
        ctx.save_for_backward(qkv, pe, rate)
        ctx.args = (kernel_size, stride, scale, dilation)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        qkv, pe, rate = ctx.saved_tensors
        kernel_size, stride, scale, dilation = ctx.args
        batch, _, d, height, width = qkv.shape
        heads = qkv.shape[1] // 3
        g = _Geometry(height, width, d, kernel_size, stride, dilation)
        # the layout of qkv (d-major from SlidingACmix), which the gradient
        # of the convolution path has too: summing them and passing the sum
        # back to the projection then takes no copy
        grad_qkv = torch.empty_like(qkv)
        if stride > 1:  # the gradient of the queries between the strides
            grad_qkv[:, :heads].zero_()
        grad_rate = None if rate is None else torch.zeros_like(rate)
        for part in _chunks(batch, heads, g):
            q, k, v = qkv[part].chunk(3, 1)  # (b, heads, d, H, W) views
            grad_q, grad_k, grad_v = grad_qkv[part].chunk(3, 1)
            n = q.shape[:2].numel()
            keys = _halos(_padded(k, pe, g), g)
            values = _halos(_padded(v, None, g), g)
            queries = _to_blocks(q[..., ::stride, ::stride], g).mul_(scale)
            weights = _weights(queries, keys, g, stride, kernel_size)

            # softmax backward: dS = P * (dP - rowsum(dA * A)), A the
            # attention output before the rate (recomputed), dA its gradient
            grad_blocks = _to_blocks(grad_out[part], g)
            row = (grad_blocks * torch.bmm(weights, values)).sum(
                -1, keepdim=True)
            if rate is not None:
                grad_rate += row.sum()
                # out of place: the blocks may view grad_out (even an
                # expanded one, as from out.sum().backward())
                grad_blocks = grad_blocks * rate
                row.mul_(rate)
            grad_logits = torch.bmm(grad_blocks, values.transpose(1, 2))
            grad_logits = grad_logits.sub_(row).mul_(weights)
            grad_values = torch.bmm(weights.transpose(1, 2), grad_blocks)
            del weights, values
            _from_blocks(
                torch.bmm(grad_logits, keys).mul_(scale),
                grad_q[..., ::stride, ::stride], g)
            del keys
            grad_keys = torch.bmm(grad_logits.transpose(1, 2), queries)
            for grad, halos in ((grad_k, grad_keys), (grad_v, grad_values)):
                grad.copy_(
                    _unpad(_fold_halos(halos, n, g), height, width,
                           g).permute(0, 3, 1, 2).unflatten(0, (-1, heads)))
        grad_pe = None
        if ctx.needs_input_grad[1]:
            grad_k = grad_qkv[:, heads:2 * heads]
            grad_pe = -grad_k.sum_to_size((1, 1) + pe.shape[1:]).view(
                pe.shape)
        return grad_qkv, grad_pe, None, None, None, grad_rate, None


def sliding_window_attention(qkv: Tensor,
                             pe: Tensor,
                             kernel_size: int = 7,
                             stride: int = 1,
                             scale: float = 1.,
                             rate: Optional[Tensor] = None,
                             dilation: int = 1) -> Tensor:
    """Sliding-window (neighbourhood) attention of ResNet-ACmix.

    For the query at output pixel ``i`` (input pixel ``stride * i``), the
    keys ``j`` are the ``kernel_size x kernel_size`` window centred on it in
    the reflection-padded map (with ``dilation``, every ``dilation``-th
    pixel of a window ``dilation * (kernel_size - 1) + 1`` wide, as a
    dilated convolution samples), with logits ``scale * q_i . (k_j - pe_j)``;
    the output is the softmax-weighted sum of the (reflection-padded) values
    of the window. This equals the official
    ``scale * q_i . (k_j + pe_i - pe_j)``, whose ``pe_i`` term cancels in the
    softmax.

    Computed block by block with matrix products, on chunks of the batch:
    the working memory is bounded (a few MB per chunk) and the backward pass
    keeps only the inputs and the output.

    Args:
        qkv (Tensor): ``(B, 3 * heads, d, H, W)`` (any strides), index
            ``s * heads + h`` of dim 1 holding head ``h`` of the queries
            (s=0), keys (s=1) and values (s=2), the layout of
            :class:`ACmixConvPath`. Needs
            ``H, W > dilation * (kernel_size // 2)`` (reflection padding).
        pe (Tensor): ``(1, d, H, W)`` positional encoding, shared by the
            batch and the heads.
        kernel_size (int): Window side (odd). Defaults to 7.
        stride (int): Queries at every ``stride``-th pixel from the first;
            the output is ``ceil(H / stride) x ceil(W / stride)``.
            Defaults to 1.
        scale (float): Factor on the queries. Defaults to 1.
        rate (Tensor, optional): One-element factor on the output (ACmix's
            ``rate1``), with its gradient. Multiplying here rather than
            after spares keeping the output for the backward pass, which
            recomputes it. Defaults to None (no factor).
        dilation (int): Spacing of the window's pixels; above 1 only with
            stride 1 (as in dilated ResNets). Defaults to 1.

    Returns:
        Tensor: ``(B, heads, d, Ho, Wo)``.
    """
    layout = '(B, 3 * heads, d, H, W)'
    check_dilation(stride, dilation, 'sliding-window attention')
    check_reflection_input(qkv, dilated_size(kernel_size, dilation),
                           'sliding-window attention', layout)
    if qkv.shape[1] % 3:
        raise ValueError(f'expected qkv of shape {layout}, got '
                         f'{tuple(qkv.shape)}')
    if rate is not None:
        rate = rate.to(qkv.dtype)
    if is_exporting():
        # the custom function is opaque to the exporters and its blocks
        # fix the input size: the plain-op formulation instead
        out = unfold_window_attention(qkv, pe, kernel_size, stride, scale,
                                      dilation)
        return out if rate is None else rate * out
    return _SlidingWindowAttention.apply(qkv, pe, kernel_size, stride, scale,
                                         rate, dilation)


def dilated_size(kernel_size: int, dilation: int) -> int:
    """Side of the window a ``kernel_size`` kernel spans at
    ``dilation``."""
    return dilation * (kernel_size - 1) + 1


def check_dilation(stride: int, dilation: int, owner: str) -> None:
    """``dilation`` is a positive int, above 1 only at stride 1."""
    if isinstance(dilation, bool) or not isinstance(dilation,
                                                    int) or dilation < 1:
        raise ValueError(
            f'{owner}: dilation must be a positive int, got {dilation!r}')
    if dilation > 1 and stride != 1:
        # a strided dilated window would need the phases of the queries'
        # grid; dilated ResNets (mmseg's ResNetV1c) never stride there
        raise NotImplementedError(
            f'{owner}: dilation {dilation} with stride {stride}; dilation '
            'above 1 needs stride 1')


def unfold_attention(q: Tensor,
                     k: Tensor,
                     v: Tensor,
                     pe: Tensor,
                     kernel_size: int = 7,
                     stride: int = 1,
                     scale: float = 1.,
                     dilation: int = 1) -> Tensor:
    """The attention of :func:`sliding_window_attention` as the official
    code computes it, with ``nn.Unfold`` (which copies every key, value and
    encoding ``kernel_size**2`` times) and the logit
    ``scale * q_i . (k_j + pe_i - pe_j)`` (``pe_i`` included).

    Plain ops only: the layers use it while exporting, where exporters
    trace it for any input size, and the tests as the oracle of the blocked
    computation.

    Args:
        q, k, v (Tensor): ``(N, d, H, W)`` queries, keys and values.
        pe (Tensor): ``(1, d, H, W)`` positional encoding.
        kernel_size, stride, scale, dilation: As for
            :func:`sliding_window_attention`.

    Returns:
        Tensor: ``(N, d, Ho, Wo)``.
    """
    d = q.shape[1]
    pad = dilation * (kernel_size // 2)
    q = q[:, :, ::stride, ::stride] * scale
    pe_q = pe[:, :, ::stride, ::stride]
    out_h, out_w = q.shape[-2:]  # symbolic while exporting

    def windows(x):  # (n, d, H, W) -> (n, d, kernel_size**2, Ho, Wo)
        x = F.pad(x, [pad] * 4, mode='reflect')
        x = F.unfold(x, kernel_size, dilation, stride=stride)
        return x.view(x.shape[0], d, kernel_size**2, out_h, out_w)

    logits = (q.unsqueeze(2) *
              (windows(k) + pe_q.unsqueeze(2) - windows(pe))).sum(1)
    weights = logits.softmax(1)
    return (weights.unsqueeze(1) * windows(v)).sum(2)


def unfold_window_attention(qkv: Tensor,
                            pe: Tensor,
                            kernel_size: int = 7,
                            stride: int = 1,
                            scale: float = 1.,
                            dilation: int = 1) -> Tensor:
    """:func:`unfold_attention` with the contract of
    :func:`sliding_window_attention` (without ``rate``):
    ``(B, 3 * heads, d, H, W)`` projections to ``(B, heads, d, Ho, Wo)``."""
    batch, heads = qkv.shape[0], qkv.shape[1] // 3
    # (B * heads, d, H, W) each, as the official code views them
    q, k, v = (t.flatten(0, 1) for t in qkv.chunk(3, 1))
    out = unfold_attention(q, k, v, pe, kernel_size, stride, scale,
                           dilation)
    return out.unflatten(0, (batch, heads))


def _unmarked(tensor: Tensor) -> Tensor:
    return tensor


class SlidingACmix(ACmixOperator):
    """ACmix operator with 7x7 sliding-window attention (ResNet-ACmix).

    ``out = rate1 * attention(q, k, v) + rate2 * conv_path(q, k, v)`` where
    ``q, k, v`` are 1x1 projections of the input (one convolution ``qkv``,
    with bias) shared by both paths. The attention of every (strided) query
    pixel covers the ``kernel_att x kernel_att`` window around it in the
    reflection-padded keys and values, with a relative positional term from
    a learnt encoding ``pos_enc`` of a [-1, 1] coordinate grid, as in the
    official code (logit ``q_i . (k_j + pe_i - pe_j) / sqrt(head_dims)``).
    The convolution path (:class:`ACmixConvPath`, no ``fc`` bias) has the
    same stride.

    With ``stride > 1`` the queries are the pixels ``0, stride, 2 * stride,
    ...`` of each axis, so the output is ``ceil(H / stride) x
    ceil(W / stride)`` for any size, odd ones included (the official code
    fails on those), the same grid as the convolution path. With
    ``dilation`` (stride 1), both paths are dilated alike: the convolution
    path shifts by multiples of ``dilation`` pixels and the attention window
    takes every ``dilation``-th pixel (a dilated neighbourhood). The input
    must be larger than ``dilation * (kernel_att // 2)`` on both sides
    (reflection padding).

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels; divisible by ``num_heads``.
        kernel_att (int): Attention window side (odd). Defaults to 7.
        num_heads (int): Number of attention heads. Defaults to 4.
        kernel_conv (int): Kernel size of the convolution path.
            Defaults to 3.
        stride (int): Stride of both paths. Defaults to 1.
        recompute (bool): In training, let the backward pass recompute the
            projections from the input (one more 1x1 convolution) instead of
            keeping them: the layer then keeps little more than its input
            and output. Defaults to True.
        dilation (int): Dilation of both paths; above 1 only at stride 1.
            Defaults to 1.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 kernel_att: int = 7,
                 num_heads: int = 4,
                 kernel_conv: int = 3,
                 stride: int = 1,
                 recompute: bool = True,
                 dilation: int = 1):
        super().__init__()
        if out_channels % num_heads:
            raise ValueError(f'out_channels ({out_channels}) must be '
                             f'divisible by num_heads ({num_heads})')
        if kernel_att % 2 == 0 or kernel_att < 1:
            raise ValueError(f'kernel_att must be odd, got {kernel_att}')
        if stride < 1:
            raise ValueError(f'stride must be positive, got {stride}')
        check_dilation(stride, dilation, 'SlidingACmix')
        self.out_channels = out_channels
        self.num_heads = num_heads
        self.head_dims = out_channels // num_heads
        self.kernel_att = kernel_att
        self.stride = stride
        self.dilation = dilation
        self.recompute = recompute
        # stage I, shared by both paths: q, k, v (official conv1/2/3),
        # computed in d-major order (what the folded convolution path reads
        # without a copy)
        self.qkv = nn.Conv2d(in_channels, 3 * out_channels, 1)
        self.register_buffer(
            'd_major', d_major_order(3 * num_heads, self.head_dims),
            persistent=False)
        # attention path: positional encoding (official conv_p)
        self.pos_enc = nn.Conv2d(2, self.head_dims, 1)
        self.add_conv_path(
            num_heads,
            self.head_dims,
            kernel_conv,
            stride,
            fc_bias=False,
            dilation=dilation)

    def forward(self, x: Tensor) -> Tensor:
        """Map ``(B, C_in, H, W)`` to ``(B, C_out, ceil(H / stride),
        ceil(W / stride))``."""
        check_reflection_input(x, dilated_size(self.kernel_att,
                                               self.dilation), 'SlidingACmix')
        if not (self.recompute and torch.is_grad_enabled()
                and not torch.compiler.is_compiling()):
            return self._mix(x, self._project(_unmarked, x))
        with recompute_in_backward(self._project, x) as qkv:
            return self._mix(x, qkv)

    def _project(self, mark: Callable, x: Tensor) -> Tensor:
        """Stage I: the projections ``(B, 3 * heads, head_dims, H, W)``, a
        d-major view; ``mark`` (see :func:`recompute_in_backward`) flags the
        tensors that the backward pass recomputes rather than keeps."""
        batch, _, height, width = x.shape
        order = self.d_major
        weight = mark(self.qkv.weight[order])
        qkv = mark(F.conv2d(x, weight, self.qkv.bias[order]))
        return qkv.view(batch, self.head_dims, 3 * self.num_heads, height,
                        width).transpose(1, 2)

    def _mix(self, x: Tensor, qkv: Tensor) -> Tensor:
        """Stage II, ``rate1 * attention + rate2 * conv``: the paths apply
        the rates themselves, which spares keeping their outputs for the
        backward pass (see :func:`sliding_window_attention` and
        :class:`ACmixConvPath`)."""
        attention = self._attend(qkv, self._position_encoding(*x.shape[-2:]),
                                 self.rates.rate1)
        conv = self.conv(qkv, *self.conv_rate_and_bias())
        return self.mix(attention.flatten(1, 2), conv)

    def _position_encoding(self, height: int, width: int) -> Tensor:
        """``pos_enc`` of the coordinate grid, ``(1, head_dims, H, W)``
        (a matrix product: faster than a 1x1 convolution of 2 channels)."""
        weight, bias = self.pos_enc.weight, self.pos_enc.bias
        grid = coordinate_grid(height, width, weight.device, weight.dtype)
        return torch.addmm(bias[:, None], weight.flatten(1),
                           grid.view(2, -1)).view(1, -1, height, width)

    def _attend(self, qkv: Tensor, pe: Tensor, rate: Tensor) -> Tensor:
        """The attention path times ``rate``: projections ``(B, 3 * heads,
        head_dims, H, W)`` and encoding ``(1, head_dims, H, W)`` to
        ``(B, heads, head_dims, H', W')``."""
        return sliding_window_attention(qkv, pe, self.kernel_att,
                                        self.stride, self.head_dims**-0.5,
                                        rate, self.dilation)

    def extra_repr(self) -> str:
        return (f'heads={self.num_heads}, head_dims={self.head_dims}, '
                f'kernel_att={self.kernel_att}, stride={self.stride}, '
                f'dilation={self.dilation}')


__all__ = [
    'SlidingACmix', 'sliding_window_attention', 'coordinate_grid',
    'unfold_attention', 'unfold_window_attention'
]
