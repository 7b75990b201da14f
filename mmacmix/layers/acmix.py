"""The parts of ACmix that every family shares (torch alone).

ACmix (Pan et al., "On the Integration of Self-Attention and Convolution",
CVPR 2022) splits both self-attention and convolution into

* stage I: 1x1 projections of the input. ACmix computes them once, as
  ``3 * heads`` maps of ``head_dims`` channels (the query, key and value of
  every head), and shares them between the two paths;
* stage II: the attention path (family specific: windows for Swin, sliding
  windows for ResNet, spatial reduction for PVT, ...) and the convolution
  path (:class:`ACmixConvPath`), whose outputs two learnable rates mix
  (:class:`MixingRates`).

A family plugs in by computing its projections in the layout documented in
:class:`ACmixConvPath`, running its own attention path on them, and returning
``rates(attention_out, conv_path(qkv))`` (see
:class:`mmacmix.layers.WindowACmix` for Swin).
"""
from contextlib import contextmanager
from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .exporting import is_exporting

# switches of the layers' faster forms, each computing the paper's form
FAST_FORMS = ('fold_fc', )


@contextmanager
def paper_formulation(model: nn.Module):
    """Run every ACmix layer of ``model`` in the paper's form (``fc`` over
    the projections, then the group convolution) instead of an equivalent
    faster one, e.g. to count its FLOPs or to compare the two forms."""
    switched = [(module, name) for module in model.modules()
                for name in FAST_FORMS if getattr(module, name, None) is True]
    for module, name in switched:
        setattr(module, name, False)
    try:
        yield model
    finally:
        for module, name in switched:
            setattr(module, name, True)


def d_major_order(num_maps: int, head_dims: int) -> Tensor:
    """Output-channel order of a projection to ``num_maps`` maps of
    ``head_dims`` channels (official order: map-major, channel
    ``m * head_dims + d``) that makes it d-major (channel
    ``d * num_maps + m``): the layout the folded convolution path reads
    without a copy. Index the projection's weight and bias with it; the
    parameters keep the official order, so checkpoints load unchanged."""
    maps = torch.arange(num_maps) * head_dims
    return (maps[None] + torch.arange(head_dims)[:, None]).flatten()


def check_reflection_input(x: Tensor,
                           kernel_size: int,
                           owner: str,
                           layout: str = '(B, C, H, W)') -> None:
    """``x`` has the ``layout``'s number of dims and is larger than
    ``kernel_size // 2`` on both sides (the last two), what a
    reflection-padded ``kernel_size`` window needs."""
    if x.dim() != layout.count(',') + 1:
        raise ValueError(f'{owner} expected an input of shape {layout}, got '
                         f'{tuple(x.shape)}')
    height, width = x.shape[-2:]
    if min(height, width) <= kernel_size // 2:
        raise ValueError(
            f'{owner} needs inputs larger than {kernel_size // 2} on both '
            f'sides (reflection padding of a {kernel_size}x{kernel_size} '
            f'window), got {height}x{width}')


class ACmixConvPath(nn.Module):
    """Convolution path of ACmix (stage II, paper Sec. 3.3 and 4.3).

    A fully connected layer mixes the ``3 * num_heads`` projected maps into
    ``kernel_size**2`` maps for every channel index ``d < head_dims``; a
    ``kernel_size x kernel_size`` group convolution (one group per ``d``)
    then shifts and sums them. Its kernels start as one-hot shift kernels
    (kernel ``k`` is 1 at ``(k // kernel_size, k % kernel_size)``), so at
    initialisation the path is exactly the "shift and sum" of the paper, and
    they stay learnable.

    Layout (the one of the official code, so its weights load unchanged):

    * input ``qkv``: ``(B, 3 * num_heads, head_dims, H, W)``; index
      ``s * num_heads + h`` of dim 1 holds head ``h`` of the query (s=0),
      key (s=1) or value (s=2) (``in_maps`` maps in general). Any strides
      are fine: a permuted view of a channels-last projection (Swin) or a
      concatenation of NCHW ones (ResNet) costs no copy here.
    * ``fc`` output: ``kernel_size**2 * head_dims`` maps, d-major (map
      ``d * kernel_size**2 + k``).
    * output: ``(B, num_heads * head_dims, H', W')``, an NCHW tensor that may
      be channels-last in memory; output channel ``d * num_heads + j``
      comes from the maps of channel index ``d``. The convolution zero-pads
      the border.

    Args:
        num_heads (int): Number of attention heads of the projections.
        head_dims (int): Channels per head; the output has
            ``num_heads * head_dims`` channels.
        kernel_size (int): Kernel size of the convolution path. Defaults to 3.
        stride (int): Stride of the convolution path. Defaults to 1.
        fc_bias (bool): Whether ``fc`` has a bias (Swin: yes; ResNet: no).
            Defaults to True.
        in_maps (int, optional): Projected maps that ``fc`` mixes (dim 1 of
            the input); SAN-ACmix has 6 (a query, a key and four value
            groups) for 4 output heads. Defaults to ``3 * num_heads``.
        fold_fc (bool, optional): Compute ``fc`` and ``dep_conv`` as one
            group convolution with composed kernels (same output up to
            float round-off, same parameters). Defaults to folding with at
            most 5 heads, where it is faster.
    """

    def __init__(self,
                 num_heads: int,
                 head_dims: int,
                 kernel_size: int = 3,
                 stride: int = 1,
                 fc_bias: bool = True,
                 in_maps: int = None,
                 fold_fc: bool = None):
        super().__init__()
        # even kernels would grow the map by a pixel (padding k // 2)
        if isinstance(kernel_size, bool) or not isinstance(
                kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(
                'ACmixConvPath: kernel_size (kernel_conv of the backbones) '
                f'must be a positive odd int, got {kernel_size!r}')
        if isinstance(stride, bool) or not isinstance(stride,
                                                      int) or stride < 1:
            raise ValueError('ACmixConvPath: stride must be a positive int, '
                             f'got {stride!r}')
        # measured on CPU (train step and inference, batch 8, d-major
        # input): folding is 1.2-6x faster up to 5 heads, slower from 6 on
        # (its kernels grow with the heads)
        self.fold_fc = num_heads <= 5 if fold_fc is None else fold_fc
        self.num_heads = num_heads
        self.head_dims = head_dims
        self.kernel_size = kernel_size
        self.fc = nn.Linear(
            in_maps or 3 * num_heads, kernel_size**2, bias=fc_bias)
        self.dep_conv = nn.Conv2d(
            kernel_size**2 * head_dims,
            num_heads * head_dims,
            kernel_size,
            stride=stride,
            padding=kernel_size // 2,
            groups=head_dims,
            bias=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Official initialisation: PyTorch's default for ``fc`` (as for the
        official 1x1 convolution) and shift kernels for ``dep_conv``."""
        self.fc.reset_parameters()
        self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        """(Re-)apply the one-hot shift kernels to ``dep_conv``.

        mmengine's ``BaseModule.init_weights`` calls this after the
        ``init_cfg`` initialisers of every enclosing module and before any
        ``Pretrained`` loading, so a generic initialiser (e.g. Kaiming on
        all ``Conv2d``) never wipes the shift initialisation.
        """
        k = self.kernel_size
        weight = self.dep_conv.weight  # (C, k*k, k, k)
        weight.zero_()
        taps = torch.arange(k * k, device=weight.device)
        weight[:, taps, taps // k, taps % k] = 1

    def forward(self,
                qkv: Tensor,
                rate: Optional[Tensor] = None,
                bias: Optional[Tensor] = None) -> Tensor:
        """Map the projections (see the class docstring) to the output,
        times ``rate`` (one-element; ACmix's ``rate2``) if given, plus
        ``bias`` (one value per output channel) if given. Both go into the
        convolution's weights and bias (no pass over the output), and the
        output is not kept for the backward pass."""
        if self.fold_fc:
            return self._folded(qkv, rate, bias)
        # fc over the 3*heads axis, moved last: (B, H, W, head_dims, k*k)
        return self.shift_and_sum(self.fc(qkv.permute(0, 3, 4, 2, 1)), rate,
                                  bias)

    def _folded(self, qkv: Tensor, rate: Optional[Tensor],
                bias: Optional[Tensor]) -> Tensor:
        """``fc`` and ``dep_conv`` as one group convolution over the
        projections: ``fc`` mixes the maps of one channel index ``d`` and
        ``dep_conv``'s group ``d`` reads only those, so the two compose to
        kernels ``(num_heads, 3 * num_heads, k, k)`` per group."""
        batch, _, head_dims, height, width = qkv.shape
        # (B, head_dims * 3 * heads, H, W), d-major: a view when the caller
        # projects d-major channels-last maps (see the class docstring)
        maps = qkv.transpose(1, 2).reshape(batch, -1, height, width)
        weight, bias_kernel = self._folded_kernels(rate)
        bias, border = self._fc_bias(bias_kernel, bias, height, width)
        dep = self.dep_conv
        out = F.conv2d(maps, weight.to(maps.dtype), _cast(bias, maps.dtype),
                       dep.stride, dep.padding, groups=head_dims)
        return self._add_border(out, border)

    def sum_over_maps(self,
                      maps: Sequence[Tensor],
                      rate: Optional[Tensor] = None,
                      bias: Optional[Tensor] = None) -> Tensor:
        """The folded form of a path with one head over its maps given
        apart (the query, key and value: ``(B, head_dims, H, W)`` each, in
        the order of the input's dim 1), times ``rate``, plus ``bias``: a
        sum of depthwise convolutions, one per map. On CPU this runs 2-3x
        faster than the group convolution with 3 channels per group
        (measured, train and inference); with more heads it is slower."""
        weight, bias_kernel = self._folded_kernels(rate)
        bias, border = self._fc_bias(bias_kernel, bias, *maps[0].shape[-2:])
        dep, head_dims = self.dep_conv, self.head_dims
        out = None
        for index, part in enumerate(maps):
            kernel = weight[:, index, None].to(part.dtype)
            part = F.conv2d(part, kernel,
                            _cast(bias, part.dtype) if out is None else None,
                            dep.stride, dep.padding, groups=head_dims)
            # in place: the convolutions' backward passes do not read their
            # outputs
            out = part if out is None else out.add_(part)
        return self._add_border(out, border)

    def _folded_kernels(self, rate: Optional[Tensor]) -> tuple:
        """The kernels of the folded form, ``(num_heads * head_dims,
        in_maps, k, k)``, and those that ``fc``'s bias composes to
        (None without a bias)."""
        dep_weight = self._scaled(self.dep_conv.weight, rate)
        weight = torch.einsum('okxy,ks->osxy', dep_weight, self.fc.weight)
        if self.fc.bias is None:
            return weight, None
        return weight, torch.einsum('okxy,k->oxy', dep_weight, self.fc.bias)

    def _fc_bias(self, bias_kernel: Optional[Tensor], bias: Optional[Tensor],
                 height: int, width: int) -> tuple:
        """``fc``'s bias through the group convolution, the composition of
        the bias with the zero-padded border of ``fc``'s output: a
        per-channel constant inside (added to the convolution's ``bias``,
        which the convolution applies for free) and a map that differs from
        it only within ``padding`` pixels of the border. Returns the
        convolution's bias and that map minus the constant,
        ``(1, C, H', W')`` (or None without a bias), for
        :meth:`_add_border`."""
        if bias_kernel is None:
            return bias, None
        dep = self.dep_conv
        ones = bias_kernel.new_ones(1, self.head_dims, height, width)
        border = F.conv2d(ones, bias_kernel[:, None], None, dep.stride,
                          dep.padding, groups=self.head_dims)
        inside = bias_kernel.sum((-2, -1))
        bias = inside if bias is None else bias + inside
        return bias, border - inside[:, None, None]

    def _add_border(self, out: Tensor, border: Optional[Tensor]) -> Tensor:
        """Add :meth:`_fc_bias`'s border map to the convolution's output,
        only where it is not zero when the stride is 1 (a frame of
        ``padding`` pixels); in place, as the convolutions' backward passes
        do not read their outputs."""
        if border is None:
            return out
        border = border.to(out.dtype)
        pad = self.dep_conv.padding[0]
        height, width = out.shape[-2:]
        if (is_exporting() or self.dep_conv.stride[0] != 1
                or min(height, width) <= 2 * pad):
            return out.add_(border)
        for rows in (slice(0, pad), slice(height - pad, height)):
            out[..., rows, :] += border[..., rows, :]
        rows = slice(pad, height - pad)
        for cols in (slice(0, pad), slice(width - pad, width)):
            out[..., rows, cols] += border[..., rows, cols]
        return out

    def shift_and_sum(self,
                      maps: Tensor,
                      rate: Optional[Tensor] = None,
                      bias: Optional[Tensor] = None) -> Tensor:
        """The group convolution over ``fc``'s output ``maps``,
        ``(B, H, W, head_dims, kernel_size**2)``, times ``rate``, plus
        ``bias``, as in :meth:`forward`, for families that compute ``fc`` in
        parts (PVT)."""
        batch, height, width = maps.shape[:3]
        # d-major maps as a channels-last NCHW view, which the convolution
        # takes without a copy
        maps = maps.reshape(batch, height, width, -1).permute(0, 3, 1, 2)
        dep = self.dep_conv
        weight = self._scaled(dep.weight, rate)
        return F.conv2d(maps, weight.to(maps.dtype), _cast(bias, maps.dtype),
                        dep.stride, dep.padding, groups=self.head_dims)

    @staticmethod
    def _scaled(weight: Tensor, rate: Optional[Tensor]) -> Tensor:
        return weight if rate is None else rate * weight


def _cast(tensor: Optional[Tensor], dtype: torch.dtype) -> Optional[Tensor]:
    return None if tensor is None else tensor.to(dtype)


class MixingRates(nn.Module):
    """The two learnable scalars that mix the paths (paper Eq. 12):
    ``out = rate1 * attention_out + rate2 * conv_out``.

    Args:
        attention_rate (float): Initial ``rate1``. Defaults to 0.5 (official).
        conv_rate (float): Initial ``rate2``. Defaults to 0.5 (official).
    """

    def __init__(self, attention_rate: float = 0.5, conv_rate: float = 0.5):
        super().__init__()
        self.rate1 = nn.Parameter(torch.tensor([float(attention_rate)]))
        self.rate2 = nn.Parameter(torch.tensor([float(conv_rate)]))

    def forward(self, attention_out: Tensor, conv_out: Tensor) -> Tensor:
        # cast so that low-precision (autocast) activations stay low-precision
        rate1 = self.rate1.to(attention_out.dtype)
        rate2 = self.rate2.to(conv_out.dtype)
        return rate1 * attention_out + rate2 * conv_out

    def conv_bias(self, proj: nn.Linear) -> Optional[Tensor]:
        """``rate1 * proj.bias``: the bias that :meth:`mix_projected` expects
        the convolution path to have added (None without a bias)."""
        return None if proj.bias is None else self.rate1 * proj.bias

    def mix_projected(self, attention: Tensor, proj: nn.Linear,
                      conv_out: Tensor) -> Tensor:
        """``rate1 * proj(attention) + rate2 * conv``, the mixing of families
        whose attention path ends in a linear ``proj``, in one matrix product
        that accumulates into ``conv_out``: the convolution path's output
        ``rate2 * conv + rate1 * proj.bias`` (pass ``rate2`` and
        :meth:`conv_bias` to :class:`ACmixConvPath`). No elementwise pass
        over the maps; ``conv_out`` (``(..., C)``) is overwritten and
        returned, ``attention`` (the same shape) may have any strides."""
        channels = conv_out.shape[-1]
        weight = (self.rate1 * proj.weight).to(conv_out.dtype).t()
        attention = attention.reshape(-1, attention.shape[-1]).to(weight)
        if is_exporting():
            # the torchscript exporter loses in-place updates of a view
            return torch.addmm(conv_out.reshape(-1, channels), attention,
                               weight).view(conv_out.shape)
        conv_out = conv_out.contiguous()
        conv_out.view(-1, channels).addmm_(attention, weight)
        return conv_out
