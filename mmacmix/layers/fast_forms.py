"""Faster forms of ACmix's shared parts, each computing the paper's form of
:mod:`mmacmix.layers.acmix` (torch alone); see docs/design_acmix.md.

``ACmixConvPath(fold_fc=True)`` runs :func:`folded_conv_path` (the switch:
:func:`mmacmix.layers.acmix.paper_formulation`).
"""
from typing import TYPE_CHECKING, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .exporting import is_exporting

if TYPE_CHECKING:
    from .acmix import ACmixConvPath


def d_major_order(num_maps: int, head_dims: int) -> Tensor:
    """Output-channel order of a projection to ``num_maps`` maps of
    ``head_dims`` channels (official order: map-major, channel
    ``m * head_dims + d``) that makes it d-major (channel
    ``d * num_maps + m``): the layout the folded convolution path reads
    without a copy. Index the projection's weight and bias with it; the
    parameters keep the official order, so checkpoints load unchanged."""
    maps = torch.arange(num_maps) * head_dims
    return (maps[None] + torch.arange(head_dims)[:, None]).flatten()


def folded_conv_path(path: 'ACmixConvPath', qkv: Tensor,
                     rate: Optional[Tensor],
                     bias: Optional[Tensor]) -> Tensor:
    """:meth:`ACmixConvPath.forward` of ``path`` with ``fc`` and
    ``dep_conv`` as one group convolution over the projections: ``fc``
    mixes the maps of one channel index ``d`` and ``dep_conv``'s group
    ``d`` reads only those, so the two compose to kernels
    ``(num_heads, in_maps, k, k)`` per group."""
    batch, _, head_dims, height, width = qkv.shape
    # (B, head_dims * in_maps, H, W), d-major: a view when the caller
    # projects d-major channels-last maps
    maps = qkv.transpose(1, 2).reshape(batch, -1, height, width)
    weight, bias_kernel = _folded_kernels(path, rate)
    bias, border = _fc_bias(path, bias_kernel, bias, height, width)
    dep = path.dep_conv
    out = F.conv2d(maps, weight.to(maps.dtype), _cast(bias, maps.dtype),
                   dep.stride, dep.padding, dep.dilation, head_dims)
    return _add_border(path, out, border)


def sum_over_maps(path: 'ACmixConvPath',
                  maps: Sequence[Tensor],
                  rate: Optional[Tensor] = None,
                  bias: Optional[Tensor] = None) -> Tensor:
    """:func:`folded_conv_path` of a ``path`` with one head over its maps
    given apart (the query, key and value: ``(B, head_dims, H, W)`` each, in
    the order of the input's dim 1): a sum of depthwise convolutions, one
    per map. On CPU this runs 2-3x faster than the group convolution with 3
    channels per group (measured, train and inference); with more heads it
    is slower."""
    weight, bias_kernel = _folded_kernels(path, rate)
    bias, border = _fc_bias(path, bias_kernel, bias, *maps[0].shape[-2:])
    dep, head_dims = path.dep_conv, path.head_dims
    out = None
    for index, part in enumerate(maps):
        kernel = weight[:, index, None].to(part.dtype)
        part = F.conv2d(part, kernel,
                        _cast(bias, part.dtype) if out is None else None,
                        dep.stride, dep.padding, dep.dilation, head_dims)
        # in place: the convolutions' backward passes do not read their
        # outputs
        out = part if out is None else out.add_(part)
    return _add_border(path, out, border)


def _folded_kernels(path: 'ACmixConvPath',
                    rate: Optional[Tensor]) -> tuple:
    """The kernels of the folded form, ``(num_heads * head_dims, in_maps,
    k, k)``, and those that ``fc``'s bias composes to (None without a
    bias)."""
    dep_weight = path.shift_kernels(rate)
    weight = torch.einsum('okxy,ks->osxy', dep_weight, path.fc.weight)
    if path.fc.bias is None:
        return weight, None
    return weight, torch.einsum('okxy,k->oxy', dep_weight, path.fc.bias)


def _fc_bias(path: 'ACmixConvPath', bias_kernel: Optional[Tensor],
             bias: Optional[Tensor], height: int, width: int) -> tuple:
    """``fc``'s bias through the group convolution, the composition of the
    bias with the zero-padded border of ``fc``'s output: a per-channel
    constant inside (added to the convolution's ``bias``, which the
    convolution applies for free) and a map that differs from it only within
    ``padding`` pixels of the border. Returns the convolution's bias and that
    map minus the constant, ``(1, C, H', W')`` (or None without a bias), for
    :func:`_add_border`."""
    if bias_kernel is None:
        return bias, None
    dep = path.dep_conv
    ones = bias_kernel.new_ones(1, path.head_dims, height, width)
    border = F.conv2d(ones, bias_kernel[:, None], None, dep.stride,
                      dep.padding, dep.dilation, path.head_dims)
    inside = bias_kernel.sum((-2, -1))
    bias = inside if bias is None else bias + inside
    return bias, border - inside[:, None, None]


def _add_border(path: 'ACmixConvPath', out: Tensor,
                border: Optional[Tensor]) -> Tensor:
    """Add :func:`_fc_bias`'s border map to the convolution's output, only
    where it is not zero when the stride is 1 (a frame of ``padding``
    pixels); in place, as the convolutions' backward passes do not read
    their outputs."""
    if border is None:
        return out
    border = border.to(out.dtype)
    pad = path.dep_conv.padding[0]
    height, width = out.shape[-2:]
    if (is_exporting() or path.dep_conv.stride[0] != 1
            or min(height, width) <= 2 * pad):
        return out.add_(border)
    for rows in (slice(0, pad), slice(height - pad, height)):
        out[..., rows, :] += border[..., rows, :]
    rows = slice(pad, height - pad)
    for cols in (slice(0, pad), slice(width - pad, width)):
        out[..., rows, cols] += border[..., rows, cols]
    return out


def _cast(tensor: Optional[Tensor], dtype: torch.dtype) -> Optional[Tensor]:
    return None if tensor is None else tensor.to(dtype)


def accumulate_projection(attention: Tensor, weight: Tensor,
                          out: Tensor) -> Tensor:
    """``out + attention @ weight.T``, the attention path's final linear
    map (without its bias) added to the convolution path's output ``out``
    (``(..., C)``) in one matrix product, with no elementwise pass over the
    maps. ``out`` is overwritten and returned; ``attention`` (the same
    shape) may have any strides."""
    channels = out.shape[-1]
    weight = weight.to(out.dtype).t()
    attention = attention.reshape(-1, attention.shape[-1]).to(weight)
    if is_exporting():
        # the torchscript exporter loses in-place updates of a view
        return torch.addmm(out.reshape(-1, channels), attention,
                           weight).view(out.shape)
    out = out.contiguous()
    out.view(-1, channels).addmm_(attention, weight)
    return out
