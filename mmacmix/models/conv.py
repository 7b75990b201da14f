"""Registers :class:`mmacmix.layers.ACmixConv2d` in mmengine's root
``MODELS``, where mmcv's ``build_conv_layer`` looks convolution types up:
``dict(type='ACmixConv2d')`` then builds it wherever a config takes a
``conv_cfg`` or, in mmdet's ResNet and ResNeXt, a ``dcn``."""
from mmengine.registry import MODELS

from mmacmix.layers import ACmixConv2d

MODELS.register_module('ACmixConv2d', module=ACmixConv2d)
