"""ACmix with a convolution's signature: a drop-in for a 3x3 ``nn.Conv2d``.

:class:`ACmixConv2d` is ResNet-ACmix's operator (:class:`SlidingACmix`)
behind the arguments of ``nn.Conv2d``, so that code building its
convolutions from those arguments (mmcv's ``build_conv_layer``, e.g. the
``dcn`` slot of mmdet's ResNet, or a user's own network) can build ACmix
instead; :func:`swap_resnet_convs` puts it into a torchvision ResNet.
"""
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from torch import Tensor

from .sliding_acmix import SlidingACmix

_IntOrPair = Union[int, Tuple[int, int]]


def _square(value: _IntOrPair, name: str) -> int:
    """``value`` (an int or a pair of equal ints) as one int."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2 or value[0] != value[1]:
            raise ValueError(f'ACmixConv2d: {name} must be an int or a pair '
                             f'of equal ints, got {value!r}')
        value = value[0]
    return value


class ACmixConv2d(nn.Module):
    """ACmix layer taking the arguments of a ``nn.Conv2d``.

    The output is ResNet-ACmix's operator (:class:`SlidingACmix`, built as
    ``self.acmix``), ``rate1 * attention + rate2 * convolution path``, both
    paths with ``stride``: a map of ``ceil(H / stride) x ceil(W / stride)``,
    the size of a ``kernel_size`` convolution with its 'same' padding. The
    convolution path has the ``kernel_size`` kernels; the attention covers
    the ``kernel_att x kernel_att`` window of every (strided) pixel, so
    inputs must be larger than ``kernel_att // 2`` on both sides. With
    ``dilation`` both paths are dilated (the attention takes every
    ``dilation``-th pixel of its window), as in a dilated ResNet; inputs
    must then be larger than ``dilation * (kernel_att // 2)``.

    What a convolution can do and ACmix cannot raises, when built:
    ``padding`` other than ``dilation * (kernel_size // 2)`` (ValueError),
    even kernel sizes (ValueError), ``groups != 1`` (ValueError) and
    ``dilation > 1`` together with ``stride > 1`` (NotImplementedError).

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels; divisible by ``num_heads``.
        kernel_size (int | tuple[int, int]): Kernel size of the convolution
            path, odd (a pair: equal sides). Defaults to 3.
        stride (int | tuple[int, int]): Stride of both paths (a pair: equal
            sides). Defaults to 1.
        padding (int | tuple[int, int] | str, optional): Must be
            ``dilation * (kernel_size // 2)`` (or ``'same'`` at stride 1),
            the only padding the layer has; accepted so that convolution
            call sites need no change. Defaults to None (that padding).
        dilation (int | tuple[int, int]): Dilation of both paths (a pair:
            equal sides); above 1 only at stride 1. Defaults to 1.
        groups (int): Must be 1. Defaults to 1.
        bias (bool): Add a learnt bias per output channel (initialised to
            zeros) to the output, as a convolution's bias would be; the
            operator itself has none at its output. Defaults to False.
        num_heads (int): Attention heads. Defaults to 4.
        kernel_att (int): Attention window side (odd). Defaults to 7.
        recompute (bool): See :class:`SlidingACmix`. Defaults to True.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 kernel_size: _IntOrPair = 3,
                 stride: _IntOrPair = 1,
                 padding: Optional[_IntOrPair] = None,
                 dilation: _IntOrPair = 1,
                 groups: int = 1,
                 bias: bool = False,
                 num_heads: int = 4,
                 kernel_att: int = 7,
                 recompute: bool = True):
        super().__init__()
        kernel_size = _square(kernel_size, 'kernel_size')
        stride = _square(stride, 'stride')
        dilation = _square(dilation, 'dilation')
        if not isinstance(kernel_size, int) or kernel_size % 2 == 0:
            raise ValueError('ACmixConv2d supports odd kernel sizes only, '
                             f'got kernel_size={kernel_size!r}')
        same = dilation * (kernel_size // 2)
        # torch's 'same' (stride 1 only) is the padding the layer has
        if padding is None or (padding == 'same' and stride == 1):
            padding = same
        padding = _square(padding, 'padding')
        if padding != same:
            raise ValueError(
                'ACmixConv2d supports only the same padding of its kernel, '
                f'padding={same} for kernel_size={kernel_size} and '
                f'dilation={dilation}, got padding={padding!r}')
        if groups != 1:
            raise ValueError('ACmixConv2d does not support grouped '
                             f'convolutions, got groups={groups!r}')
        # nn.Conv2d's attributes, for code that reads them
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = (kernel_size, kernel_size)
        self.stride = (stride, stride)
        self.padding = (padding, padding)
        self.dilation = (dilation, dilation)
        self.groups = 1
        self.acmix = SlidingACmix(in_channels, out_channels, kernel_att,
                                  num_heads, kernel_size, stride, recompute,
                                  dilation)
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, **acmix_kwargs) -> 'ACmixConv2d':
        """An :class:`ACmixConv2d` with the arguments of ``conv`` (newly
        initialised, on its device and dtype).

        Args:
            conv (nn.Conv2d): The convolution it replaces.
            **acmix_kwargs: ``num_heads``, ``kernel_att``, ``recompute``.
        """
        layer = cls(conv.in_channels, conv.out_channels, conv.kernel_size,
                    conv.stride, conv.padding, conv.dilation, conv.groups,
                    conv.bias is not None, **acmix_kwargs)
        return layer.to(conv.weight.device, conv.weight.dtype)

    def init_weights(self) -> None:
        """Keep the shift kernels through mmengine's ``init_weights``."""
        self.acmix.init_weights()

    def forward(self, x: Tensor) -> Tensor:
        """Map ``(B, C_in, H, W)`` to ``(B, C_out, ceil(H / stride),
        ceil(W / stride))``."""
        out = self.acmix(x)
        if self.bias is None:
            return out
        return out + self.bias.to(out.dtype)[:, None, None]

    def extra_repr(self) -> str:
        return (f'{self.in_channels}, {self.out_channels}, '
                f'kernel_size={self.kernel_size}, stride={self.stride}, '
                f'dilation={self.dilation}, bias={self.bias is not None}')


def swap_resnet_convs(model: nn.Module,
                      stages: Sequence[int] = (3, 4),
                      **acmix_kwargs) -> nn.Module:
    """Replace, in place, the 3x3 ``conv2`` of every block of the given
    stages of a torchvision ResNet by an :class:`ACmixConv2d` of the same
    arguments (stride included), newly initialised; returns ``model``.

    Args:
        model (nn.Module): A torchvision ``ResNet`` (any module with
            ``layer1`` ... ``layer4`` of blocks with a ``conv2``).
        stages (Sequence[int]): Stages, 1 to 4, to swap. Defaults to
            (3, 4), a BoTNet-like hybrid.
        **acmix_kwargs: ``num_heads``, ``kernel_att``, ``recompute`` of the
            layers.
    """
    for stage in stages:
        for block in getattr(model, f'layer{stage}'):
            block.conv2 = ACmixConv2d.from_conv(block.conv2, **acmix_kwargs)
    return model


__all__ = ['ACmixConv2d', 'swap_resnet_convs']
