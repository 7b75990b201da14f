"""Official ResNet-ACmix checkpoints (LeapLabTHU/ACmix, ResNet folder):
torchvision's ResNet keys, with the ACmix operator as ``conv2``."""
import re
from typing import Dict

from torch import Tensor

from .layout import Layout, fuse_qkv

_BLOCK = r'layer(?P<layer>\d+)\.(?P<block>\d+)\.'
_OUR_BLOCK = r'backbone.layer\g<layer>.\g<block>.'
_NORM = r'(?P<stat>weight|bias|running_mean|running_var|num_batches_tracked)'
_OPERATOR_RULES = [
    # (official key inside the operator, ours, transform)
    (r'conv(?P<i>[123])\.(?P<p>weight|bias)', r'qkv_part\g<i>.\g<p>', None),
    (r'conv_p\.(?P<p>weight|bias)', r'pos_enc.\g<p>', None),
    # Conv2d(3*heads, k*k, 1) -> Linear(3*heads, k*k)
    (r'fc\.weight', r'conv.fc.weight', lambda t: t.flatten(1)),
    (r'dep_conv\.weight', r'conv.dep_conv.weight', None),
    (r'(?P<rate>rate1|rate2)', r'rates.\g<rate>', None),
]

RESNET_ACMIX_LAYOUT = Layout(
    name='resnet_acmix_official',
    description='official ResNet-ACmix (LeapLabTHU/ACmix, ResNet folder)',
    rules=[
        (r'conv1\.weight', r'backbone.conv1.weight', None),
        (r'bn1\.' + _NORM, r'backbone.bn1.\g<stat>', None),
        (_BLOCK + r'(?P<conv>conv1|conv3)\.weight',
         _OUR_BLOCK + r'\g<conv>.weight', None),
        (_BLOCK + r'(?P<bn>bn1|bn2|bn3)\.' + _NORM,
         _OUR_BLOCK + r'\g<bn>.\g<stat>', None),
        (_BLOCK + r'downsample\.(?P<ds>0\.weight|1\.' + _NORM + ')',
         _OUR_BLOCK + r'downsample.\g<ds>', None),
    ] + [(_BLOCK + r'conv2\.' + pattern, _OUR_BLOCK + 'conv2.' + ours,
          transform) for pattern, ours, transform in _OPERATOR_RULES] + [
             (r'fc\.(weight|bias)', r'head.fc.\1', None),
         ],
    required=['conv1.weight', 'bn1.weight', 'fc.weight', 'fc.bias'],
    block_pattern=_BLOCK,
    block_required=[
        f'{layer}.{param}' for layer in ('bn1', 'bn2', 'bn3')
        for param in ('weight', 'bias', 'running_mean', 'running_var')
    ] + [
        'conv1.weight', 'conv3.weight', 'conv2.fc.weight',
        'conv2.dep_conv.weight', 'conv2.conv_p.weight', 'conv2.conv_p.bias',
        'conv2.rate1', 'conv2.rate2'
    ] + [
        f'conv2.conv{i}.{param}' for i in (1, 2, 3)
        for param in ('weight', 'bias')
    ],
    finalize=fuse_qkv)


def convert_acmix_module(state: Dict[str, Tensor]) -> Dict[str, Tensor]:
    """Convert the state dict of one official ResNet ACmix operator (keys
    ``conv1``, ..., ``rate2``) to that of
    :class:`mmacmix.layers.SlidingACmix`, with the rules of the layout."""
    converted = {}
    for key, value in state.items():
        for pattern, ours, transform in _OPERATOR_RULES:
            if re.fullmatch(pattern, key):
                converted[re.sub(pattern, ours, key)] = (
                    transform(value) if transform else value)
                break
        else:
            raise KeyError(f'unexpected key {key!r} for an official ACmix '
                           'operator')
    # the rules give keys without a leading dot: add one for the fusion
    converted = {'.' + k: v for k, v in converted.items()}
    fuse_qkv(converted)
    return {k[1:]: v for k, v in converted.items()}
