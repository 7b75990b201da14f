"""Official Swin-ACmix checkpoints (LeapLabTHU/ACmix, Swin folder): Swin's
layout plus each block's convolution path and rates."""
from .layout import Layout
from .swin_official import (BLOCK, OUR_BLOCK, SWIN_BLOCK_REQUIRED,
                            SWIN_OFFICIAL_REQUIRED, SWIN_RULES)

SWIN_ACMIX_LAYOUT = Layout(
    name='swin_acmix_official',
    description='official Swin-ACmix (LeapLabTHU/ACmix, Swin folder)',
    rules=SWIN_RULES + [
        # Conv2d(3*heads, k*k, 1) -> Linear(3*heads, k*k)
        (BLOCK + r'attn\.fc\.weight', OUR_BLOCK + r'attn.conv.fc.weight',
         lambda t: t.flatten(1)),
        (BLOCK + r'attn\.(fc\.bias|dep_conv\.weight)',
         OUR_BLOCK + r'attn.conv.\3', None),
        (BLOCK + r'attn\.(rate1|rate2)', OUR_BLOCK + r'attn.rates.\3', None),
    ],
    required=SWIN_OFFICIAL_REQUIRED,
    block_pattern=BLOCK,
    block_required=SWIN_BLOCK_REQUIRED + [
        'attn.fc.weight', 'attn.fc.bias', 'attn.dep_conv.weight',
        'attn.rate1', 'attn.rate2'
    ])
