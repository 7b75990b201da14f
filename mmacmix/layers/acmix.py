"""The parts of ACmix that every family shares, in the paper's form (torch
alone): the convolution path, the mixing rates and :class:`ACmixOperator`,
the base of the four operators. See docs/design_acmix.md; the equivalent
faster forms are in :mod:`mmacmix.layers.fast_forms`.
"""
from contextlib import contextmanager
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .fast_forms import accumulate_projection, folded_conv_path

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
            group convolution with composed kernels
            (:func:`~mmacmix.layers.fast_forms.folded_conv_path`: same
            output up to float round-off, same parameters). Defaults to
            folding with at most 5 heads, where it is faster.
        dilation (int): Dilation of the shifts (of ``dep_conv``): the
            maps are shifted by multiples of ``dilation`` pixels, as a
            dilated ``kernel_size`` convolution samples. Defaults to 1.
    """

    def __init__(self,
                 num_heads: int,
                 head_dims: int,
                 kernel_size: int = 3,
                 stride: int = 1,
                 fc_bias: bool = True,
                 in_maps: int = None,
                 fold_fc: bool = None,
                 dilation: int = 1):
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
        if isinstance(dilation, bool) or not isinstance(
                dilation, int) or dilation < 1:
            raise ValueError('ACmixConvPath: dilation must be a positive '
                             f'int, got {dilation!r}')
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
            padding=dilation * (kernel_size // 2),
            dilation=dilation,
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
            return folded_conv_path(self, qkv, rate, bias)
        # fc over the in_maps axis, moved last: (B, H, W, head_dims, k*k)
        return self.shift_and_sum(self.fc(qkv.permute(0, 3, 4, 2, 1)), rate,
                                  bias)

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
        weight = self.shift_kernels(rate).to(maps.dtype)
        if bias is not None:
            bias = bias.to(maps.dtype)
        dep = self.dep_conv
        return F.conv2d(maps, weight, bias, dep.stride, dep.padding,
                        dep.dilation, self.head_dims)

    def shift_kernels(self, rate: Optional[Tensor] = None) -> Tensor:
        """``dep_conv``'s kernels, times ``rate`` if given."""
        weight = self.dep_conv.weight
        return weight if rate is None else rate * weight


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


class ACmixOperator(nn.Module):
    """Base of the ACmix operators: the convolution path ``conv`` and the
    mixing ``rates`` that every family shares, and the one way the two paths
    are mixed, ``rate1 * attention + rate2 * conv`` with each rate folded
    into its path's last linear step:

    * the convolution path runs with :meth:`conv_rate_and_bias`: ``rate2``
      in its kernels and, where the attention path ends in a ``proj``
      layer, ``rate1 * proj.bias`` in its bias;
    * :meth:`mix` adds the attention path's output to it: one that the path
      has already multiplied by ``rate1``, or, given ``proj``, the output
      before ``proj``, which then takes ``rate1`` into its weights and
      accumulates into the convolution path's output.

    A family builds its stage I and attention path, then calls
    :meth:`add_conv_path` (its last parameters), and ends its forward pass
    with :meth:`mix`.
    """

    def add_conv_path(self,
                      num_heads: int,
                      head_dims: int,
                      kernel_size: int,
                      stride: int = 1,
                      fc_bias: bool = True,
                      in_maps: Optional[int] = None,
                      dilation: int = 1) -> None:
        """Create ``conv`` (:class:`ACmixConvPath`, same arguments) and
        ``rates`` (:class:`MixingRates`, at their official 0.5)."""
        self.conv = ACmixConvPath(num_heads, head_dims, kernel_size, stride,
                                  fc_bias, in_maps, dilation=dilation)
        self.rates = MixingRates()

    def init_weights(self) -> None:
        """Keep the shift kernels through mmengine's ``init_weights``."""
        self.conv.init_weights()

    def conv_rate_and_bias(self, proj: Optional[nn.Linear] = None) -> tuple:
        """The ``rate`` and ``bias`` of the convolution path's call for
        :meth:`mix`: ``rate2``, and ``rate1 * proj.bias`` (None without
        ``proj`` or its bias)."""
        rates = self.rates
        if proj is None or proj.bias is None:
            return rates.rate2, None
        return rates.rate2, rates.rate1 * proj.bias

    def mix(self,
            attention: Tensor,
            conv: Tensor,
            proj: Optional[nn.Linear] = None) -> Tensor:
        """``rate1 * proj(attention) + rate2 * conv_path``.

        Args:
            attention (Tensor): The attention path's output, already times
                ``rate1``; given ``proj``, its output before ``proj`` (any
                strides), channels last.
            conv (Tensor): The convolution path's output, computed with
                :meth:`conv_rate_and_bias` (of the same ``proj``), in the
                layout of ``attention``; with ``proj`` it is overwritten.
            proj (nn.Linear, optional): The attention path's final linear
                layer. Defaults to None (the path has none left to apply).
        """
        if proj is None:
            return attention + conv
        return accumulate_projection(attention,
                                     self.rates.rate1 * proj.weight, conv)
