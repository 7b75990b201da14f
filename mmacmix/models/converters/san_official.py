"""The SAN authors' ImageNet checkpoints of SAN-10/15/19 with patchwise
attention (hszhao/SAN, ``model/san.py``), into SAN-ACmix.

SAN-ACmix keeps SAN's network and attention (docs/design_san.md), so every
SAN tensor has its place: the stem ``conv_in``/``bn_in``, each stage's
transition ``conv{s}``/``bn{s}``, each bottleneck's norms and output
convolution, the operator's ``conv1``/``conv2``/``conv3`` (query, key,
values) fused into ``qkv``, its weight MLP ``conv_w`` and the classifier
``fc``. What SAN lacks, the convolution paths, starts at its init and the
rates at (1, 0), so the converted model computes SAN's.
"""
from .layout import CONV_PATH_AT_INIT, Layout, attention_only_rates, fuse_qkv

_NORM = r'(weight|bias|running_mean|running_var|num_batches_tracked)'
_BLOCK = r'layer(\d)\.(\d+)\.'
_OUR_BLOCK = r'backbone.stages.\1.blocks.\2.'
_OUR_OPERATOR = _OUR_BLOCK + 'acmix.'
# SAN's weight MLP (nn.Sequential) by index: ours
_WEIGHT_MLP = {'0': 'attn_norm1', '2': 'attn_conv1', '3': 'attn_norm2',
               '5': 'attn_conv2'}


def _finalize(converted) -> None:
    """Fuse each operator's query, key and values, then start the rates at
    attention only."""
    fuse_qkv(converted)
    attention_only_rates(converted)


SAN_LAYOUT = Layout(
    name='san_official',
    description='SAN-10/15/19 patchwise (hszhao/SAN); the ACmix parts start '
    'at their initialisation, rates at (1, 0)',
    rules=[
        (r'conv_in\.weight', r'backbone.stem.weight', None),
        (r'bn_in\.' + _NORM, r'backbone.stem_norm.\1', None),
        (r'conv(\d)\.weight', r'backbone.stages.\1.conv.weight', None),
        (r'bn(\d)\.' + _NORM, r'backbone.stages.\1.norm.\2', None),
        (_BLOCK + r'(bn1|bn2)\.' + _NORM, _OUR_BLOCK + r'\3.\4', None),
        (_BLOCK + r'conv\.(weight|bias)', _OUR_BLOCK + r'conv.\3', None),
        (_BLOCK + r'sam\.conv([123])\.(weight|bias)',
         _OUR_OPERATOR + r'qkv_part\3.\4', None),
    ] + [(_BLOCK + rf'sam\.conv_w\.{index}\.' + _NORM,
          _OUR_OPERATOR + rf'{ours}.\3', None)
         for index, ours in _WEIGHT_MLP.items()] + [
        (r'fc\.(weight|bias)', r'head.fc.\1', None),
    ],
    required=['conv_in.weight', 'bn_in.weight', 'conv0.weight',
              'fc.weight'],
    block_pattern=_BLOCK,
    block_required=[
        f'{layer}.{param}' for layer in ('bn1', 'bn2', 'sam.conv_w.0',
                                         'sam.conv_w.3')
        for param in ('weight', 'bias', 'running_mean', 'running_var')
    ] + [
        f'{layer}.{param}'
        for layer in ('sam.conv1', 'sam.conv2', 'sam.conv3', 'sam.conv_w.5',
                      'conv') for param in ('weight', 'bias')
    ] + ['sam.conv_w.2.weight'],
    finalize=_finalize,
    at_init=CONV_PATH_AT_INIT)
