"""whai362/PVT v1 ImageNet classifiers (``pvt_tiny.pth`` ...); what the
conversion keeps and drops is in docs/design_pvt.md."""
import math

from torch import Tensor

from .layout import CONV_PATH_AT_INIT, Layout, attention_only_rates

NUM_STAGES = 4  # every PVT v1 model


def _position_grid(pos_embed: Tensor) -> Tensor:
    """``(1, N, C)`` on a square grid, after a leading class-token slot in
    the last stage, to ``(1, C, side, side)``."""
    side = math.isqrt(pos_embed.shape[1])
    if side * side != pos_embed.shape[1]:
        pos_embed = pos_embed[:, 1:]
        side = math.isqrt(pos_embed.shape[1])
    return pos_embed.transpose(1, 2).reshape(1, pos_embed.shape[2], side,
                                             side)


_BLOCK_LAYERS = r'(norm1|norm2|attn\.q|attn\.kv|attn\.proj|attn\.sr|' \
                r'attn\.norm|mlp\.fc1|mlp\.fc2)'
_RULES = [
    rule for stage in range(NUM_STAGES) for rule in (
        (rf'patch_embed{stage + 1}\.proj\.(weight|bias)',
         rf'backbone.stages.{stage}.patch_embed.projection.\1', None),
        (rf'patch_embed{stage + 1}\.norm\.(weight|bias)',
         rf'backbone.stages.{stage}.patch_embed.norm.\1', None),
        (rf'pos_embed{stage + 1}', rf'backbone.stages.{stage}.pos_embed',
         _position_grid),
        (rf'block{stage + 1}\.(\d+)\.{_BLOCK_LAYERS}\.(weight|bias)',
         rf'backbone.stages.{stage}.blocks.\1.\2.\3', None),
    )
] + [
    (r'norm\.(weight|bias)', rf'backbone.norm{NUM_STAGES - 1}.\1', None),
    (r'head\.(weight|bias)', r'head.fc.\1', None),
    # PVTACmix pools globally: the class token has no place in it
    (r'cls_token', None, None),
]

PVT_V1_LAYOUT = Layout(
    name='pvt_v1_official',
    description='PVT v1 ImageNet classifier (whai362/PVT); the ACmix '
    'convolution paths start at their initialisation, rates at (1, 0)',
    rules=_RULES,
    required=[
        f'{name}{stage + 1}{suffix}' for stage in range(NUM_STAGES)
        for name, suffix in (('patch_embed', '.proj.weight'), ('pos_embed',
                                                               ''))
    ] + ['block1.0.attn.q.weight', 'block1.0.attn.kv.weight'],
    block_pattern=r'block\d+\.\d+\.',
    block_required=[
        f'{layer}.{param}'
        for layer in ('norm1', 'attn.q', 'attn.kv', 'attn.proj', 'norm2',
                      'mlp.fc1', 'mlp.fc2') for param in ('weight', 'bias')
    ],
    finalize=attention_only_rates,
    at_init=CONV_PATH_AT_INIT)
