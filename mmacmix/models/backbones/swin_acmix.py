"""Swin-ACmix: Swin Transformer with the ACmix operator in every block."""
from typing import Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule, ModuleList
from mmengine.registry import MODELS
from torch import Tensor

from mmacmix.layers import WindowACmix

from .base import ACmixBackbone
from .common import (PatchEmbed, PreNormBlock, check_input,
                     init_transformer_weights, resolve_arch)


class PaddedPatchEmbed(PatchEmbed):
    """A :class:`PatchEmbed` that zero-pads its input at the bottom/right to
    a multiple of the patch size instead of dropping the remainder."""

    def forward(self, x: Tensor) -> Tensor:
        height, width = x.shape[-2:]
        p = self.patch_size
        return super().forward(F.pad(x, (0, -width % p, 0, -height % p)))


class PatchMerging(nn.Module):
    """Halve the resolution and double the channels of ``(B, H, W, C)``;
    odd sizes are zero-padded at the bottom/right.

    The 2x2 neighbours are concatenated in the official order
    ``x[0::2, 0::2], x[1::2, 0::2], x[0::2, 1::2], x[1::2, 1::2]``.
    """

    def __init__(self, in_channels: int):
        super().__init__()
        self.norm = nn.LayerNorm(4 * in_channels)
        self.reduction = nn.Linear(4 * in_channels, 2 * in_channels,
                                   bias=False)

    def forward(self, x: Tensor) -> Tensor:
        height, width = x.shape[1:3]
        x = F.pad(x, (0, 0, 0, width % 2, 0, height % 2))
        x = torch.cat([
            x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2],
            x[:, 1::2, 1::2]
        ], -1)
        return self.reduction(self.norm(x))


class SwinACmixBlock(PreNormBlock):
    """Pre-norm Swin block whose window attention is :class:`WindowACmix`.

    Args:
        embed_dims (int): Channels of the block.
        num_heads (int): Number of attention heads.
        window_size (int): Side of the attention windows.
        shift (bool): Whether the windows are shifted by half a window.
        qkv_bias (bool): Whether the q/k/v projection has a bias.
        attn_drop_rate (float): Dropout on the attention weights.
        kernel_conv (int): Kernel size of the ACmix convolution path.
        **block_kwargs: The other arguments of :class:`PreNormBlock`
            (``mlp_ratio``, ``drop_rate``, ``drop_path_rate``, ``with_cp``,
            ``init_cfg``).
    """

    def __init__(self, embed_dims: int, num_heads: int, window_size: int,
                 shift: bool, qkv_bias: bool, attn_drop_rate: float,
                 kernel_conv: int, **block_kwargs):
        attn = WindowACmix(
            embed_dims,
            num_heads,
            window_size,
            shift_size=window_size // 2 if shift else 0,
            qkv_bias=qkv_bias,
            attn_drop=attn_drop_rate,
            kernel_conv=kernel_conv)
        super().__init__(embed_dims, attn, **block_kwargs)


class SwinACmixStage(BaseModule):
    """Blocks alternating regular and shifted windows, then an optional
    :class:`PatchMerging`; returns the blocks' output and the merged map."""

    def __init__(self,
                 depth: int,
                 drop_path_rates: Sequence[float],
                 downsample: bool,
                 init_cfg=None,
                 **block_kwargs):
        super().__init__(init_cfg)
        self.blocks = ModuleList([
            SwinACmixBlock(
                shift=i % 2 == 1,
                drop_path_rate=drop_path_rates[i],
                **block_kwargs) for i in range(depth)
        ])
        self.downsample = PatchMerging(
            block_kwargs['embed_dims']) if downsample else None

    def forward(self, x: Tensor):
        for block in self.blocks:
            x = block(x)
        return x, (self.downsample(x) if self.downsample else x)


@MODELS.register_module()
class SwinACmix(ACmixBackbone):
    """Swin Transformer with ACmix blocks (Pan et al., CVPR 2022).

    Every window attention of Swin is an ACmix operator
    (:class:`mmacmix.layers.WindowACmix`): the q/k/v projections feed both
    the window attention and a shift-initialised convolution path, mixed by
    two learnable rates. The interface follows mmdet's/mmseg's
    ``SwinTransformer`` and serves classification (mmpretrain), detection
    (mmdet) and segmentation (mmseg); it returns NCHW maps with strides 4,
    8, 16 and 32 (ceil) for any input size.

    Padding: the patch embedding pads the input at the bottom/right to a
    multiple of ``patch_size``, patch merging pads odd sizes by one, and the
    attention path pads every map to a multiple of ``window_size`` (as in
    mmdet's Swin). The convolution path never sees window padding: it runs on
    the real pixels with the 3x3 convolution zero-padding at the border. In
    shifted blocks both paths run on the cyclically shifted map, as in the
    official code, so where no window padding is needed (e.g. 224x224 inputs)
    the outputs equal the official model's.

    Args:
        arch (str | dict): ``'tiny'`` or ``'small'``, or a dict with
            ``embed_dims``, ``depths`` and ``num_heads``. Defaults to 'tiny'.
        pretrain_img_size (int | tuple[int]): Input size in pre-training; it
            sets the size of the absolute position embedding. Defaults to 224.
        in_channels (int): Input channels. Defaults to 3.
        patch_size (int): Patch size of the embedding. Defaults to 4.
        window_size (int): Side of the attention windows. Defaults to 7.
        mlp_ratio (float): MLP hidden channels over embedding channels.
            Defaults to 4.
        qkv_bias (bool): Whether the q/k/v projections have a bias.
            Defaults to True.
        kernel_conv (int): Kernel size of the ACmix convolution path.
            Defaults to 3.
        drop_rate (float): Dropout rate after the patch embedding, after each
            ACmix operator and in the MLPs. Defaults to 0.
        attn_drop_rate (float): Dropout rate on attention weights.
            Defaults to 0.
        drop_path_rate (float): Stochastic depth rate, increasing linearly
            over the blocks up to this value. Defaults to 0.1.
        use_abs_pos_embed (bool): Add a learnable absolute position embedding
            after the patch embedding (resized bicubically to the input).
            Defaults to False.
        out_indices (Sequence[int]): Stages to output; each gets a LayerNorm
            ``norm{i}``. ``norm3`` is also the final norm of the classifier.
            Defaults to (0, 1, 2, 3).
        frozen_stages (int): Stages to freeze (eval mode, no gradients),
            with the patch embedding for 0 and above; -1 freezes nothing.
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
    arch_zoo = {
        **dict.fromkeys(['t', 'tiny'], {
            'embed_dims': 96,
            'depths': [2, 2, 6, 2],
            'num_heads': [3, 6, 12, 24]
        }),
        **dict.fromkeys(['s', 'small'], {
            'embed_dims': 96,
            'depths': [2, 2, 18, 2],
            'num_heads': [3, 6, 12, 24]
        }),
    }

    def __init__(self,
                 arch: Union[str, dict] = 'tiny',
                 pretrain_img_size: Union[int, Sequence[int]] = 224,
                 in_channels: int = 3,
                 patch_size: int = 4,
                 window_size: int = 7,
                 mlp_ratio: float = 4.,
                 qkv_bias: bool = True,
                 kernel_conv: int = 3,
                 drop_rate: float = 0.,
                 attn_drop_rate: float = 0.,
                 drop_path_rate: float = 0.1,
                 use_abs_pos_embed: bool = False,
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 frozen_stages: int = -1,
                 with_cp: bool = False,
                 init_cfg=None,
                 pretrained: Optional[str] = None):
        super().__init__(init_cfg, pretrained)
        arch = resolve_arch(arch, self.arch_zoo,
                            {'embed_dims', 'depths', 'num_heads'},
                            'SwinACmix')
        embed_dims, depths = arch['embed_dims'], arch['depths']
        num_stages = len(depths)
        self.num_features = [embed_dims * 2**i for i in range(num_stages)]
        self._set_stages(num_stages, out_indices, frozen_stages)
        self.in_channels = in_channels

        self.patch_embed = PaddedPatchEmbed(in_channels, embed_dims,
                                            patch_size)
        if use_abs_pos_embed:
            if isinstance(pretrain_img_size, int):
                pretrain_img_size = (pretrain_img_size, pretrain_img_size)
            self.absolute_pos_embed = nn.Parameter(
                torch.zeros(1, embed_dims,
                            *(s // patch_size for s in pretrain_img_size)))
        else:
            self.absolute_pos_embed = None
        self.drop_after_pos = nn.Dropout(drop_rate)

        rates = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        self.stages = ModuleList()
        for i, depth in enumerate(depths):
            self.stages.append(
                SwinACmixStage(
                    depth=depth,
                    drop_path_rates=rates[sum(depths[:i]):sum(depths[:i + 1])],
                    downsample=i < num_stages - 1,
                    embed_dims=self.num_features[i],
                    num_heads=arch['num_heads'][i],
                    window_size=window_size,
                    mlp_ratio=mlp_ratio,
                    qkv_bias=qkv_bias,
                    drop_rate=drop_rate,
                    attn_drop_rate=attn_drop_rate,
                    kernel_conv=kernel_conv,
                    with_cp=with_cp))
        for i in self.out_indices:
            self.add_module(f'norm{i}', nn.LayerNorm(self.num_features[i]))

        self._init_swin_weights()
        self._freeze_stages()

    def _init_swin_weights(self) -> None:
        """Official Swin initialisation; the ACmix convolution paths keep
        their own (PyTorch default ``fc``, shift-kernel ``dep_conv``)."""
        def init_bias_table(m):
            if isinstance(m, WindowACmix):
                nn.init.trunc_normal_(m.relative_position_bias_table, std=.02)

        init_transformer_weights(self, init_bias_table)
        if self.absolute_pos_embed is not None:
            nn.init.trunc_normal_(self.absolute_pos_embed, std=.02)

    def _stem_parts(self) -> list:
        parts = [self.patch_embed]
        if self.absolute_pos_embed is not None:
            parts.append(self.absolute_pos_embed)
        return parts

    def _stage_parts(self, index: int) -> list:
        parts = [self.stages[index]]
        if index in self.out_indices:
            parts.append(getattr(self, f'norm{index}'))
        return parts

    def forward(self, x: Tensor) -> tuple:
        check_input(x, 'SwinACmix', self.in_channels)
        x = self.patch_embed(x)  # (B, H, W, C)
        if self.absolute_pos_embed is not None:
            pos = F.interpolate(
                self.absolute_pos_embed,
                size=x.shape[1:3],
                mode='bicubic',
                align_corners=False)
            x = x + pos.permute(0, 2, 3, 1)
        x = self.drop_after_pos(x)

        outs = []
        for i, stage in enumerate(self.stages):
            out, x = stage(x)
            if i in self.out_indices:
                out = getattr(self, f'norm{i}')(out)
                outs.append(out.permute(0, 3, 1, 2).contiguous())
        return tuple(outs)
