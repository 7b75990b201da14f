"""ResNet-ACmix: a bottleneck ResNet whose 3x3 convolutions are ACmix."""
from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.utils.checkpoint as cp
from mmcv.cnn import build_norm_layer
from mmengine.model import BaseModule, Sequential
from mmengine.registry import MODELS
from torch import Tensor
from torch.nn.modules.batchnorm import _BatchNorm

from mmacmix.layers import ACmixConvPath, SlidingACmix

from .base import ACmixBackbone
from .common import check_depth, check_input


class ACmixBottleneck(BaseModule):
    """torchvision-style (stride on the middle layer) bottleneck whose 3x3
    convolution is a :class:`SlidingACmix`: 1x1 conv, ACmix, 1x1 conv, each
    followed by a norm, with a residual connection.

    Args:
        in_channels (int): Input channels.
        width (int): Channels of the ACmix operator; the block outputs
            ``width * 4``.
        stride (int): Stride of the ACmix operator (and of the shortcut).
        kernel_att (int): Attention window side.
        num_heads (int): Attention heads.
        kernel_conv (int): Kernel size of the ACmix convolution path.
        norm_cfg (dict): Config of the norm layers.
        with_cp (bool): Use gradient checkpointing to save memory.
        recompute (bool): Let the ACmix operator recompute its projections
            in the backward pass (see :class:`SlidingACmix`); without effect
            under ``with_cp``, which recomputes the whole block.
            Defaults to True.
        dilation (int): Dilation of the ACmix operator (both paths).
            Defaults to 1.
        init_cfg (dict, optional): Initialization config. Defaults to None.
    """
    expansion = 4

    def __init__(self,
                 in_channels: int,
                 width: int,
                 stride: int,
                 kernel_att: int,
                 num_heads: int,
                 kernel_conv: int,
                 norm_cfg: dict,
                 with_cp: bool,
                 recompute: bool = True,
                 dilation: int = 1,
                 init_cfg=None):
        super().__init__(init_cfg)
        out_channels = width * self.expansion
        self.with_cp = with_cp
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = build_norm_layer(norm_cfg, width)[1]
        # under checkpointing, the operator's own hooks would keep its
        # tensors out of the checkpoint's
        self.conv2 = SlidingACmix(width, width, kernel_att, num_heads,
                                  kernel_conv, stride, recompute
                                  and not with_cp, dilation)
        self.bn2 = build_norm_layer(norm_cfg, width)[1]
        self.conv3 = nn.Conv2d(width, out_channels, 1, bias=False)
        self.bn3 = build_norm_layer(norm_cfg, out_channels)[1]
        self.relu = nn.ReLU(inplace=True)
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(
                    in_channels, out_channels, 1, stride=stride, bias=False),
                build_norm_layer(norm_cfg, out_channels)[1])
        else:
            self.downsample = None

    def _residual(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.bn3(self.conv3(out))

    def forward(self, x: Tensor) -> Tensor:
        if self.with_cp and torch.is_grad_enabled():
            out = cp.checkpoint(self._residual, x, use_reentrant=False)
        else:
            out = self._residual(x)
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


@MODELS.register_module()
class ResNetACmix(ACmixBackbone):
    """ResNet-ACmix (Pan et al., CVPR 2022), the authors' ResNet variant.

    A torchvision-style bottleneck ResNet (7x7 stem with stride 2, 3x3
    max-pool, four stages of strides 1, 2, 2, 2) whose 3x3 convolutions are
    ACmix operators (:class:`mmacmix.layers.SlidingACmix`: 7x7 sliding-window
    attention with 4 heads mixed with a 3x3 convolution path). With the
    1000-class ``fc`` of mmpretrain's ``LinearClsHead`` the parameter counts
    are the official ones: 10,487,816 (26), 14,410,896 (38) and
    18,333,976 (50).

    The interface is that of mmdet's/mmpretrain's ``ResNet``, so it serves
    classification, detection and segmentation. It returns NCHW maps of
    strides 4, 8, 16 and 32; sizes are rounded up at every stride-2 layer
    (``ceil(H / 2)``), so any input size works, odd sizes included, as long
    as every ACmix operator sees a map of at least 4x4 (reflection padding
    of the 7x7 attention window): inputs of at least 97x97 pixels (49x49
    for depth 26, whose last stage has a single block).

    Dilated, as mmseg's ``ResNetV1c`` for DeepLab and PSPNet
    (``strides=(1, 2, 1, 1), dilations=(1, 1, 2, 4),
    contract_dilation=True``): output stride 8, on the grid of
    ``ResNetV1c`` (``ceil`` at every stride-2 layer), both paths of every
    ACmix operator of a dilated stage dilated; the attention window then
    spans ``dilation * 6 + 1`` pixels, so a map of stride 8 and dilation 4
    needs more than 12 pixels: inputs of at least 97x97 again.

    Args:
        depth (int): 26, 38 or 50.
        in_channels (int): Input channels. Defaults to 3.
        stem_channels (int): Channels of the stem. Defaults to 64.
        base_channels (int): Width of the first stage's ACmix (doubling
            every stage); stage ``i`` outputs ``4 * base_channels * 2**i``
            channels. Defaults to 64.
        kernel_att (int): Attention window side. Defaults to 7.
        num_heads (int): Attention heads. Defaults to 4.
        kernel_conv (int): Kernel size of the ACmix convolution path.
            Defaults to 3.
        strides (Sequence[int]): Stride of each stage. Defaults to
            (1, 2, 2, 2).
        dilations (Sequence[int]): Dilation of each stage's ACmix operators;
            above 1 only in stages of stride 1. Defaults to (1, 1, 1, 1).
        contract_dilation (bool): Halve the dilation of a dilated stage's
            first block, as mmseg's ``ResNet`` does. Defaults to False.
        out_indices (Sequence[int]): Stages to output. Defaults to (3, ).
        frozen_stages (int): Stages to freeze (eval mode, no gradients), with
            the stem for 0 and above; -1 freezes nothing. Defaults to -1.
        norm_cfg (dict): Config of the norm layers.
            Defaults to ``dict(type='BN', requires_grad=True)``.
        norm_eval (bool): Keep the norm layers in eval mode (frozen
            statistics) during training. Defaults to False.
        with_cp (bool): Use gradient checkpointing in every block.
            Defaults to False.
        recompute (Sequence[bool]): Per stage, whether its ACmix operators
            recompute their projections in the backward pass instead of
            keeping them (:class:`SlidingACmix`): less memory for a few
            percent more time per train step. Defaults to
            (True, True, True, False): the last stage's maps are small and
            its backward pass runs first, while the memory peaks, so
            recomputing there would not lower the peak.
        init_cfg (dict | list[dict], optional): Initialization config, e.g.
            ``dict(type='Pretrained', checkpoint=..., prefix='backbone.')``
            for a checkpoint converted by
            ``tools/model_converters/acmix_official.py``. Initialisers never
            wipe the shift kernels of the convolution paths.
            Defaults to None (the official initialisation).
        pretrained (str, optional): Deprecated form of ``init_cfg``, as in
            mmdet's backbones: a path or URL loads as
            ``dict(type='Pretrained', checkpoint=pretrained)`` (no prefix),
            with a warning; not together with ``init_cfg``.
            Defaults to None.
    """
    arch_settings = {
        26: (1, 2, 4, 1),
        38: (2, 3, 5, 2),
        50: (3, 4, 6, 3),
    }

    def __init__(self,
                 depth: int,
                 in_channels: int = 3,
                 stem_channels: int = 64,
                 base_channels: int = 64,
                 kernel_att: int = 7,
                 num_heads: int = 4,
                 kernel_conv: int = 3,
                 strides: Sequence[int] = (1, 2, 2, 2),
                 dilations: Sequence[int] = (1, 1, 1, 1),
                 contract_dilation: bool = False,
                 out_indices: Sequence[int] = (3, ),
                 frozen_stages: int = -1,
                 norm_cfg: dict = dict(type='BN', requires_grad=True),
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 recompute: Sequence[bool] = (True, True, True, False),
                 init_cfg=None,
                 pretrained: Optional[str] = None):
        super().__init__(init_cfg, pretrained)
        check_depth(depth, self.arch_settings, 'ResNetACmix')
        stage_blocks = self.arch_settings[depth]
        for name, value in (('strides', strides), ('dilations', dilations),
                            ('recompute', recompute)):
            if len(value) != len(stage_blocks):
                raise ValueError(f'{name} {value} must have '
                                 f'{len(stage_blocks)} entries')
        num_stages = len(stage_blocks)
        self.depth = depth
        self._set_stages(num_stages, out_indices, frozen_stages)
        self.in_channels = in_channels
        block_dilations = [
            self._block_dilations(num_blocks, dilation, contract_dilation)
            for num_blocks, dilation in zip(stage_blocks, dilations)
        ]
        self.min_input_size = self._min_input_size(block_dilations, strides,
                                                   kernel_att)
        self.norm_eval = norm_eval

        self.conv1 = nn.Conv2d(
            in_channels, stem_channels, 7, stride=2, padding=3, bias=False)
        self.bn1 = build_norm_layer(norm_cfg, stem_channels)[1]
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)

        channels = stem_channels
        self.res_layers = []
        self.num_features = []
        for i, (stage_dilations, stride, stage_recompute) in enumerate(
                zip(block_dilations, strides, recompute)):
            width = base_channels * 2**i
            blocks = []
            for j, dilation in enumerate(stage_dilations):
                blocks.append(
                    ACmixBottleneck(
                        channels,
                        width,
                        stride if j == 0 else 1,
                        kernel_att=kernel_att,
                        num_heads=num_heads,
                        kernel_conv=kernel_conv,
                        norm_cfg=norm_cfg,
                        with_cp=with_cp,
                        recompute=stage_recompute,
                        dilation=dilation))
                channels = width * ACmixBottleneck.expansion
            self.add_module(f'layer{i + 1}', Sequential(*blocks))
            self.res_layers.append(f'layer{i + 1}')
            self.num_features.append(channels)

        self._init_official_weights()
        self._freeze_stages()

    @staticmethod
    def _block_dilations(num_blocks: int, dilation: int,
                         contract_dilation: bool) -> list:
        """The dilation of each block of a stage (mmseg's ``ResLayer``)."""
        first = dilation // 2 if contract_dilation and dilation > 1 else (
            dilation)
        return [first] + [dilation] * (num_blocks - 1)

    @staticmethod
    def _min_input_size(block_dilations: Sequence[Sequence[int]],
                        strides: Sequence[int], kernel_att: int) -> int:
        """The smallest input side for which every ACmix operator sees a
        map larger than ``dilation * (kernel_att // 2)`` (reflection
        padding): 97 for the defaults and for output stride 8 with
        dilations (1, 1, 2, 4), 49 for depth 26 (a single block in the last
        stage).

        A map of stride ``S`` (ceil at every stride-2 layer) has
        ``ceil(H / S)`` pixels, more than ``D`` exactly when ``H > S * D``.
        """
        seen = []  # stride times dilation of each operator's input map
        stride = 4  # stem and max-pool
        for dilations, stage_stride in zip(block_dilations, strides):
            # the first block sees the stage's input
            seen.append(stride * dilations[0])
            stride *= stage_stride
            seen.extend(stride * dilation for dilation in dilations[1:])
        return max(seen) * (kernel_att // 2) + 1

    def _init_official_weights(self) -> None:
        """Official initialisation: Kaiming (fan out) for convolutions, unit
        norms; the ACmix convolution paths keep their own (PyTorch default
        ``fc``, shift-kernel ``dep_conv``)."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(
                    m.weight, mode='fan_out', nonlinearity='relu')
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (_BatchNorm, nn.GroupNorm)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for m in self.modules():
            if isinstance(m, ACmixConvPath):
                m.reset_parameters()

    def _stem_parts(self) -> list:
        return [self.conv1, self.bn1]

    def _stage_parts(self, index: int) -> list:
        return [getattr(self, self.res_layers[index])]

    def forward(self, x: Tensor) -> tuple:
        check_input(x, f'ResNetACmix (depth {self.depth})', self.in_channels,
                    self.min_input_size)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        outs = []
        for i, name in enumerate(self.res_layers):
            x = getattr(self, name)(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)
