"""microsoft/Swin-Transformer ImageNet checkpoints; its rules are also the
base of the official Swin-ACmix layout."""
from typing import List

from .layout import CONV_PATH_AT_INIT, Layout, Rule, attention_only_rates

BLOCK = r'layers\.(\d+)\.blocks\.(\d+)\.'
OUR_BLOCK = r'backbone.stages.\1.blocks.\2.'

# the rules timm's layout shares (everything but patch merging and the head)
SWIN_BODY_RULES: List[Rule] = [
    (r'patch_embed\.proj\.(weight|bias)',
     r'backbone.patch_embed.projection.\1', None),
    (r'patch_embed\.norm\.(weight|bias)', r'backbone.patch_embed.norm.\1',
     None),
    # (1, L, C) -> (1, C, H, W); the official models use square inputs
    (r'absolute_pos_embed', r'backbone.absolute_pos_embed',
     lambda t: t.transpose(1, 2).reshape(
         1, t.shape[2], round(t.shape[1]**0.5), -1)),
    (BLOCK + r'(norm1|norm2|mlp\.fc1|mlp\.fc2|attn\.qkv|attn\.proj)\.'
     r'(weight|bias)', OUR_BLOCK + r'\3.\4', None),
    (BLOCK + r'attn\.relative_position_bias_table',
     OUR_BLOCK + r'attn.relative_position_bias_table', None),
    # buffers the model recomputes
    (BLOCK + r'(attn\.relative_position_index|attn_mask)', None, None),
    # the final norm is the out norm of the last of Swin's four stages
    (r'norm\.(weight|bias)', r'backbone.norm3.\1', None),
]
SWIN_RULES: List[Rule] = SWIN_BODY_RULES + [
    (r'layers\.(\d+)\.downsample\.(reduction|norm)\.(weight|bias)',
     r'backbone.stages.\1.downsample.\2.\3', None),
    (r'head\.(weight|bias)', r'head.fc.\1', None),
]
SWIN_REQUIRED = [
    'patch_embed.proj.weight', 'patch_embed.proj.bias',
    'patch_embed.norm.weight', 'patch_embed.norm.bias',
    'layers.0.blocks.0.attn.qkv.weight'
]
# patch merging ends stage 0 here, but starts stage 1 in timm's layout
SWIN_OFFICIAL_REQUIRED = SWIN_REQUIRED + [
    'layers.0.downsample.reduction.weight'
]
SWIN_BLOCK_REQUIRED = [
    f'{layer}.{param}'
    for layer in ('norm1', 'attn.qkv', 'attn.proj', 'norm2', 'mlp.fc1',
                  'mlp.fc2') for param in ('weight', 'bias')
] + ['attn.relative_position_bias_table']

SWIN_LAYOUT = Layout(
    name='swin_official',
    description='official Swin Transformer (microsoft/Swin-Transformer); '
    'the ACmix parts start at their initialisation, rates at (1, 0)',
    rules=SWIN_RULES,
    required=SWIN_OFFICIAL_REQUIRED,
    block_pattern=BLOCK,
    block_required=SWIN_BLOCK_REQUIRED,
    finalize=attention_only_rates,
    at_init=CONV_PATH_AT_INIT)
