"""PVT-ACmix: Pyramid Vision Transformer (v1) with the ACmix operator in
every block."""
import math
from typing import Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule, ModuleList
from mmengine.registry import MODELS
from torch import Tensor

from mmacmix.layers import SpatialReductionACmix, is_exporting

from .base import ACmixBackbone
from .common import (PatchEmbed, PreNormBlock, check_input,
                     init_transformer_weights, resolve_arch)

# PVT's LayerNorms (mmdet's PyramidVisionTransformer uses it for all of them)
NORM_EPS = 1e-6


class PVTACmixBlock(PreNormBlock):
    """Pre-norm PVT block whose spatial-reduction attention is
    :class:`mmacmix.layers.SpatialReductionACmix`.

    Args:
        embed_dims (int): Channels of the block.
        num_heads (int): Number of attention heads.
        sr_ratio (int): Spatial-reduction ratio of the keys and values.
        qkv_bias (bool): Whether the q/kv projections have a bias.
        attn_drop_rate (float): Dropout on the attention weights.
        kernel_conv (int): Kernel size of the ACmix convolution path.
        **block_kwargs: The other arguments of :class:`PreNormBlock`
            (``mlp_ratio``, ``drop_rate``, ``drop_path_rate``, ``with_cp``,
            ``init_cfg``).
    """

    def __init__(self, embed_dims: int, num_heads: int, sr_ratio: int,
                 qkv_bias: bool, attn_drop_rate: float, kernel_conv: int,
                 **block_kwargs):
        attn = SpatialReductionACmix(
            embed_dims,
            num_heads,
            sr_ratio,
            qkv_bias=qkv_bias,
            attn_drop=attn_drop_rate,
            kernel_conv=kernel_conv,
            norm_eps=NORM_EPS)
        super().__init__(embed_dims, attn, norm_eps=NORM_EPS, **block_kwargs)


class PVTACmixStage(BaseModule):
    """A PVT stage: patch embedding, absolute position embedding (resized
    bilinearly to the input), then the blocks.

    Args:
        in_channels (int): Channels of the input.
        embed_dims (int): Channels of the stage.
        patch_size (int): Patch size (and stride) of the patch embedding.
        pos_shape (tuple[int]): Size of the position embedding, that of the
            tokens at the pre-training input size.
        depth (int): Number of blocks.
        drop_path_rates (Sequence[float]): Stochastic depth rate per block.
        drop_rate (float): Dropout after the position embedding.
        init_cfg (dict, optional): Initialization config. Defaults to None.
        **block_kwargs: The other arguments of :class:`PVTACmixBlock`.
    """

    def __init__(self,
                 in_channels: int,
                 embed_dims: int,
                 patch_size: int,
                 pos_shape: Sequence[int],
                 depth: int,
                 drop_path_rates: Sequence[float],
                 drop_rate: float,
                 init_cfg=None,
                 **block_kwargs):
        super().__init__(init_cfg)
        self.patch_embed = PatchEmbed(
            in_channels, embed_dims, patch_size, norm_eps=NORM_EPS)
        self.pos_embed = nn.Parameter(torch.zeros(1, embed_dims, *pos_shape))
        self.drop_after_pos = nn.Dropout(drop_rate)
        self.blocks = ModuleList([
            PVTACmixBlock(
                embed_dims=embed_dims,
                drop_rate=drop_rate,
                drop_path_rate=drop_path_rates[i],
                **block_kwargs) for i in range(depth)
        ])

    def forward(self, x: Tensor) -> Tensor:
        """Map an NCHW input to ``(B, H, W, C)`` tokens."""
        x = self.patch_embed(x)
        pos = self.pos_embed
        # while exporting the sizes may be symbolic: resize (maybe to the
        # same size, which is exact)
        if is_exporting() or pos.shape[2:] != x.shape[1:3]:
            pos = F.interpolate(
                pos, size=x.shape[1:3], mode='bilinear', align_corners=False)
        x = self.drop_after_pos(x + pos.permute(0, 2, 3, 1))
        for block in self.blocks:
            x = block(x)
        return x


@MODELS.register_module()
class PVTACmix(ACmixBackbone):
    """Pyramid Vision Transformer (v1) with ACmix blocks (Pan et al., CVPR
    2022).

    Every spatial-reduction attention of PVT (Wang et al., ICCV 2021) is an
    ACmix operator (:class:`mmacmix.layers.SpatialReductionACmix`):
    the full-resolution queries and the spatially reduced keys and values
    feed PVT's attention and, upsampled back to full resolution, a
    shift-initialised convolution path; two learnable rates mix them. No
    official PVT-ACmix code exists: this design is ours, chosen to match the
    paper's parameter and FLOP budget (no extra q/k/v projections). With
    rates ``(1, 0)`` the model computes mmdet's ``PyramidVisionTransformer``
    with the same weights.

    The interface follows mmdet's ``PyramidVisionTransformer`` and serves
    classification (mmpretrain), detection (mmdet) and segmentation (mmseg):
    it returns NCHW maps with strides 4, 8, 16 and 32 for any input of at
    least 32x32 pixels; as in PVT, a remainder smaller than a patch is
    dropped (floor).

    Args:
        arch (str | dict): ``'tiny'``, ``'small'``, ``'medium'`` or
            ``'large'`` (PVT v1), or a dict with ``embed_dims``, ``depths``,
            ``num_heads``, ``sr_ratios`` and ``mlp_ratios`` (one entry per
            stage). Defaults to 'tiny'.
        pretrain_img_size (int | tuple[int]): Input size in pre-training; it
            sets the size of the absolute position embeddings.
            Defaults to 224.
        in_channels (int): Input channels. Defaults to 3.
        patch_sizes (Sequence[int]): Patch size of each stage's embedding.
            Defaults to (4, 2, 2, 2).
        qkv_bias (bool): Whether the q/kv projections have a bias.
            Defaults to True.
        kernel_conv (int): Kernel size of the ACmix convolution path.
            Defaults to 3.
        drop_rate (float): Dropout rate after the position embeddings, after
            each ACmix operator and in the MLPs. Defaults to 0.
        attn_drop_rate (float): Dropout rate on attention weights.
            Defaults to 0.
        drop_path_rate (float): Stochastic depth rate, increasing linearly
            over the blocks up to this value. Defaults to 0.1.
        out_indices (Sequence[int]): Stages to output. Defaults to
            (0, 1, 2, 3).
        out_norms (bool): Give every output stage a LayerNorm ``norm{i}``
            on its output (it does not feed the next stage). PVT v1 dense
            models have none; the classifier's ``norm3`` is PVT's final norm.
            Defaults to False.
        frozen_stages (int): Stages to freeze (eval mode, no gradients),
            each with its patch and position embeddings; 0 freezes the first
            patch and position embeddings; -1 freezes nothing.
            Defaults to -1.
        with_cp (bool): Use gradient checkpointing in every block.
            Defaults to False.
        init_cfg (dict | list[dict], optional): Initialization config, e.g.
            ``dict(type='Pretrained', checkpoint=..., prefix='backbone.')``.
            Initialisers never wipe the shift kernels of the convolution
            path. Defaults to None.
        pretrained (str, optional): Deprecated form of ``init_cfg``, as in
            mmdet's backbones: a path or URL loads as
            ``dict(type='Pretrained', checkpoint=pretrained)`` (no prefix),
            with a warning; not together with ``init_cfg``.
            Defaults to None.
    """
    _pvt_v1 = {
        'embed_dims': [64, 128, 320, 512],
        'num_heads': [1, 2, 5, 8],
        'sr_ratios': [8, 4, 2, 1],
        'mlp_ratios': [8, 8, 4, 4],
    }
    arch_zoo = {
        **dict.fromkeys(['t', 'tiny'], {
            **_pvt_v1, 'depths': [2, 2, 2, 2]
        }),
        **dict.fromkeys(['s', 'small'], {
            **_pvt_v1, 'depths': [3, 4, 6, 3]
        }),
        **dict.fromkeys(['m', 'medium'], {
            **_pvt_v1, 'depths': [3, 4, 18, 3]
        }),
        **dict.fromkeys(['l', 'large'], {
            **_pvt_v1, 'depths': [3, 8, 27, 3]
        }),
    }

    def __init__(self,
                 arch: Union[str, dict] = 'tiny',
                 pretrain_img_size: Union[int, Sequence[int]] = 224,
                 in_channels: int = 3,
                 patch_sizes: Sequence[int] = (4, 2, 2, 2),
                 qkv_bias: bool = True,
                 kernel_conv: int = 3,
                 drop_rate: float = 0.,
                 attn_drop_rate: float = 0.,
                 drop_path_rate: float = 0.1,
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 out_norms: bool = False,
                 frozen_stages: int = -1,
                 with_cp: bool = False,
                 init_cfg=None,
                 pretrained: Optional[str] = None):
        super().__init__(init_cfg, pretrained)
        arch = resolve_arch(
            arch, self.arch_zoo,
            {'embed_dims', 'depths', 'num_heads', 'sr_ratios', 'mlp_ratios'},
            'PVTACmix')
        depths = arch['depths']
        num_stages = len(depths)
        if len(patch_sizes) != num_stages:
            raise ValueError(f'{len(patch_sizes)} patch_sizes for '
                             f'{num_stages} stages')
        self.num_features = list(arch['embed_dims'])
        self._set_stages(num_stages, out_indices, frozen_stages)
        self.in_channels = in_channels
        # the smallest input every stage can reduce
        self.min_input_size = max(
            sr * math.prod(patch_sizes[:i + 1])
            for i, sr in enumerate(arch['sr_ratios']))

        if isinstance(pretrain_img_size, int):
            pretrain_img_size = (pretrain_img_size, pretrain_img_size)
        rates = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        self.stages = ModuleList()
        stride = 1
        for i, depth in enumerate(depths):
            stride *= patch_sizes[i]
            self.stages.append(
                PVTACmixStage(
                    in_channels=self.num_features[i - 1] if i else in_channels,
                    embed_dims=self.num_features[i],
                    patch_size=patch_sizes[i],
                    pos_shape=[s // stride for s in pretrain_img_size],
                    depth=depth,
                    drop_path_rates=rates[sum(depths[:i]):sum(depths[:i + 1])],
                    drop_rate=drop_rate,
                    num_heads=arch['num_heads'][i],
                    sr_ratio=arch['sr_ratios'][i],
                    mlp_ratio=arch['mlp_ratios'][i],
                    qkv_bias=qkv_bias,
                    attn_drop_rate=attn_drop_rate,
                    kernel_conv=kernel_conv,
                    with_cp=with_cp))
        self.out_norms = out_norms
        if out_norms:
            for i in self.out_indices:
                self.add_module(
                    f'norm{i}',
                    nn.LayerNorm(self.num_features[i], eps=NORM_EPS))

        self._init_pvt_weights()
        self._freeze_stages()

    def _init_pvt_weights(self) -> None:
        """PVT's initialisation (truncated-normal Linear and position
        embeddings, unit LayerNorm, PyTorch-default convolutions); the ACmix
        convolution paths keep their own (PyTorch-default ``fc``,
        shift-kernel ``dep_conv``)."""
        def init_pos_embed(m):
            if isinstance(m, PVTACmixStage):
                nn.init.trunc_normal_(m.pos_embed, std=.02)

        init_transformer_weights(self, init_pos_embed)

    def _stem_parts(self) -> list:
        return [self.stages[0].patch_embed, self.stages[0].pos_embed]

    def _stage_parts(self, index: int) -> list:
        parts = [self.stages[index]]
        if self.out_norms and index in self.out_indices:
            parts.append(getattr(self, f'norm{index}'))
        return parts

    def forward(self, x: Tensor) -> tuple:
        check_input(x, 'PVTACmix', self.in_channels, self.min_input_size)
        outs = []
        for i, stage in enumerate(self.stages):
            tokens = stage(x)  # (B, H, W, C)
            if i in self.out_indices:
                out = getattr(self, f'norm{i}')(
                    tokens) if self.out_norms else tokens
                outs.append(out.permute(0, 3, 1, 2).contiguous())
            x = tokens.permute(0, 3, 1, 2)
        return tuple(outs)
