"""SAN-ACmix: SAN (patchwise) whose self-attention operators are ACmix."""
from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.utils.checkpoint as cp
from mmcv.cnn import build_norm_layer
from mmengine.model import BaseModule, ModuleList, Sequential
from mmengine.registry import MODELS
from torch import Tensor

from mmacmix.layers import PatchwiseACmix

from .base import ACmixBackbone
from .common import check_depth, check_input


class SANACmixBlock(BaseModule):
    """SAN's pre-activation bottleneck with the patchwise ACmix operator:
    ``x + conv(relu(bn2(acmix(relu(bn1(x))))))``, ``acmix`` from ``C`` to
    ``C / 4`` channels and ``conv`` a 1x1 convolution (with bias) back to
    ``C``.

    Args:
        channels (int): Channels ``C`` of the block.
        kernel_att (int): Attention footprint side.
        kernel_conv (int): Kernel size of the ACmix convolution path.
        norm_cfg (dict): Config of the norm layers.
        with_cp (bool): Use gradient checkpointing to save memory.
        init_cfg (dict, optional): Initialization config. Defaults to None.
    """

    def __init__(self,
                 channels: int,
                 kernel_att: int,
                 kernel_conv: int,
                 norm_cfg: dict,
                 with_cp: bool,
                 init_cfg=None):
        super().__init__(init_cfg)
        width = channels // 4
        self.with_cp = with_cp
        self.bn1 = build_norm_layer(norm_cfg, channels)[1]
        self.acmix = PatchwiseACmix(channels, width, kernel_att, kernel_conv)
        self.bn2 = build_norm_layer(norm_cfg, width)[1]
        self.conv = nn.Conv2d(width, channels, 1)
        self.relu = nn.ReLU(inplace=True)

    def _residual(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn2(self.acmix(self.relu(self.bn1(x)))))
        return self.conv(out)

    def forward(self, x: Tensor) -> Tensor:
        if self.with_cp and torch.is_grad_enabled():
            return x + cp.checkpoint(self._residual, x, use_reentrant=False)
        return x + self._residual(x)


class SANACmixStage(BaseModule):
    """A SAN stage: the transition (2x2 max-pool with stride 2, 1x1
    convolution without bias), the blocks, then a norm and ReLU.

    Args:
        in_channels (int): Input channels.
        channels (int): Channels of the stage.
        num_blocks (int): Number of blocks.
        norm_cfg (dict): Config of the norm layers.
        init_cfg (dict, optional): Initialization config. Defaults to None.
        **block_kwargs: The other arguments of :class:`SANACmixBlock`.
    """

    def __init__(self,
                 in_channels: int,
                 channels: int,
                 num_blocks: int,
                 norm_cfg: dict,
                 init_cfg=None,
                 **block_kwargs):
        super().__init__(init_cfg)
        # ceil: odd sizes keep their last row and column
        self.pool = nn.MaxPool2d(2, stride=2, ceil_mode=True)
        self.conv = nn.Conv2d(in_channels, channels, 1, bias=False)
        self.blocks = Sequential(*[
            SANACmixBlock(channels, norm_cfg=norm_cfg, **block_kwargs)
            for _ in range(num_blocks)
        ])
        self.norm = build_norm_layer(norm_cfg, channels)[1]
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.norm(self.blocks(self.conv(self.pool(x)))))


@MODELS.register_module()
class SANACmix(ACmixBackbone):
    """SAN-ACmix (Pan et al., CVPR 2022, appendix C): SAN-10/15/19 with
    patchwise attention (Zhao, Jia and Koltun, CVPR 2020) whose
    self-attention operators are ACmix operators
    (:class:`mmacmix.layers.PatchwiseACmix`: SAN's patchwise attention mixed
    with a 3x3 convolution path). No official SAN-ACmix code exists; see
    :class:`mmacmix.layers.PatchwiseACmix` for our reading of the appendix.

    SAN's layout: a 1x1 stem convolution at full resolution, then five
    stages, each a transition (2x2 max-pool with stride 2 and a 1x1
    convolution to 64, 256, 512, 1024, 2048 channels), pre-activation
    bottlenecks (queries and keys of ``C/16`` channels, values of ``C/4``,
    footprints of 3x3 in the first stage and 7x7 after, as SAN's configs)
    and a norm with ReLU. PyTorch's default initialisation, as SAN's code.

    The interface is that of mmdet's/mmpretrain's ``ResNet``, so it serves
    classification, detection and segmentation. Stage ``i`` outputs NCHW maps
    of stride ``2**(i + 1)``; sizes are rounded up at every max-pool
    (``ceil(H / 2)``), so any input size works, odd sizes included, as long
    as every ACmix operator sees a map larger than half its footprint
    (reflection padding): inputs of at least 97x97 pixels with five stages
    of SAN's footprints.

    Args:
        depth (int): 10, 15 or 19.
        in_channels (int): Input channels. Defaults to 3.
        stem_channels (int): Channels of the stem. Defaults to 64.
        stage_channels (Sequence[int]): Channels ``C`` of each stage; each a
            multiple of 32 (queries of ``C/16``, 8 value channels per
            attention weight). Defaults to (64, 256, 512, 1024, 2048).
        kernel_att (Sequence[int]): Attention footprint side of each stage.
            Defaults to (3, 7, 7, 7, 7).
        kernel_conv (int): Kernel size of the ACmix convolution path.
            Defaults to 3.
        out_indices (Sequence[int]): Stages to output. Defaults to (4, ).
        frozen_stages (int): Stages to freeze (eval mode, no gradients), with
            the stem for 0 and above; -1 freezes nothing. Defaults to -1.
        norm_cfg (dict): Config of the norm layers of the stem, the blocks
            and the stages (the weight MLPs inside the operators keep SAN's
            BatchNorm2d). Defaults to ``dict(type='BN', requires_grad=True)``.
        norm_eval (bool): Keep all norm layers in eval mode (frozen
            statistics) during training. Defaults to False.
        with_cp (bool): Use gradient checkpointing in every block.
            Defaults to False.
        init_cfg (dict | list[dict], optional): Initialization config, e.g.
            ``dict(type='Pretrained', checkpoint=..., prefix='backbone.')``.
            Initialisers never wipe the shift kernels of the convolution
            paths. Defaults to None.
        pretrained (str, optional): Deprecated form of ``init_cfg``, as in
            mmdet's backbones: a path or URL loads as
            ``dict(type='Pretrained', checkpoint=pretrained)`` (no prefix),
            with a warning; not together with ``init_cfg``.
            Defaults to None.
    """
    # blocks per stage (SAN's configs)
    arch_settings = {
        10: (2, 1, 2, 4, 1),
        15: (3, 2, 3, 5, 2),
        19: (3, 3, 4, 6, 3),
    }

    def __init__(self,
                 depth: int,
                 in_channels: int = 3,
                 stem_channels: int = 64,
                 stage_channels: Sequence[int] = (64, 256, 512, 1024, 2048),
                 kernel_att: Sequence[int] = (3, 7, 7, 7, 7),
                 kernel_conv: int = 3,
                 out_indices: Sequence[int] = (4, ),
                 frozen_stages: int = -1,
                 norm_cfg: dict = dict(type='BN', requires_grad=True),
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 init_cfg=None,
                 pretrained: Optional[str] = None):
        super().__init__(init_cfg, pretrained)
        check_depth(depth, self.arch_settings, 'SANACmix')
        stage_blocks = self.arch_settings[depth]
        num_stages = len(stage_blocks)
        for name, value in (('stage_channels', stage_channels),
                            ('kernel_att', kernel_att)):
            if len(value) != num_stages:
                raise ValueError(f'{name} {value} must have {num_stages} '
                                 f'entries')
        if any(c % 32 for c in stage_channels):
            raise ValueError(f'stage_channels {stage_channels} must be '
                             f'multiples of 32')
        self.depth = depth
        self._set_stages(num_stages, out_indices, frozen_stages)
        self.in_channels = in_channels
        # stage i's maps have ceil(H / 2**i) pixels, which must be more
        # than half its footprint (reflection padding): 97 for SAN's
        self.min_input_size = max(
            2**i * (kernel // 2) + 1 for i, kernel in enumerate(kernel_att, 1))
        self.norm_eval = norm_eval
        self.num_features = list(stage_channels)

        self.stem = nn.Conv2d(in_channels, stem_channels, 1, bias=False)
        self.stem_norm = build_norm_layer(norm_cfg, stem_channels)[1]
        self.relu = nn.ReLU(inplace=True)
        self.stages = ModuleList()
        for i, num_blocks in enumerate(stage_blocks):
            self.stages.append(
                SANACmixStage(
                    stage_channels[i - 1] if i else stem_channels,
                    stage_channels[i],
                    num_blocks,
                    norm_cfg=norm_cfg,
                    kernel_att=kernel_att[i],
                    kernel_conv=kernel_conv,
                    with_cp=with_cp))
        self._freeze_stages()

    def _stem_parts(self) -> list:
        return [self.stem, self.stem_norm]

    def _stage_parts(self, index: int) -> list:
        return [self.stages[index]]

    def forward(self, x: Tensor) -> tuple:
        check_input(x, f'SANACmix (depth {self.depth})', self.in_channels,
                    self.min_input_size)
        x = self.relu(self.stem_norm(self.stem(x)))
        outs = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)
