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
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

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

    def forward(self, qkv: Tensor, rate: Optional[Tensor] = None) -> Tensor:
        """Map the projections (see the class docstring) to the output,
        times ``rate`` (one-element; ACmix's ``rate2``) if given. The folded
        form multiplies its kernels, so the output is not kept for the
        backward pass."""
        if self.fold_fc:
            return self._folded(qkv, rate)
        # fc over the 3*heads axis, moved last: (B, H, W, head_dims, k*k)
        out = self.shift_and_sum(self.fc(qkv.permute(0, 3, 4, 2, 1)))
        return out if rate is None else rate.to(out.dtype) * out

    def _folded(self, qkv: Tensor, rate: Optional[Tensor]) -> Tensor:
        """``fc`` and ``dep_conv`` as one group convolution over the
        projections: ``fc`` mixes the maps of one channel index ``d`` and
        ``dep_conv``'s group ``d`` reads only those, so the two compose to
        kernels ``(num_heads, 3 * num_heads, k, k)`` per group. ``fc``'s bias
        becomes a fixed-size map: the composition of the bias with the
        zero-padded border of ``fc``'s output."""
        batch, _, head_dims, height, width = qkv.shape
        # (B, head_dims * 3 * heads, H, W), d-major: a view when the caller
        # projects d-major channels-last maps (see the class docstring)
        maps = qkv.transpose(1, 2).reshape(batch, -1, height, width)
        dep = self.dep_conv
        dep_weight = dep.weight if rate is None else rate * dep.weight
        weight = torch.einsum('okxy,ks->osxy', dep_weight, self.fc.weight)
        out = F.conv2d(maps, weight.to(maps.dtype), None, dep.stride,
                       dep.padding, groups=head_dims)
        if self.fc.bias is None:
            return out
        bias_kernel = torch.einsum('okxy,k->oxy', dep_weight, self.fc.bias)
        ones = maps.new_ones(1, head_dims, height, width)
        return out + F.conv2d(ones, bias_kernel[:, None].to(maps.dtype), None,
                              dep.stride, dep.padding, groups=head_dims)

    def shift_and_sum(self, maps: Tensor) -> Tensor:
        """The group convolution over ``fc``'s output ``maps``,
        ``(B, H, W, head_dims, kernel_size**2)``, for families that compute
        ``fc`` in parts (PVT)."""
        batch, height, width = maps.shape[:3]
        # d-major maps as a channels-last NCHW view, which the convolution
        # takes without a copy
        maps = maps.reshape(batch, height, width, -1).permute(0, 3, 1, 2)
        return self.dep_conv(maps)


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
