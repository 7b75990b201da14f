"""mmpretrain's Swin Transformer (``SwinTransformer`` in an
``ImageClassifier``: ``backbone.*``, ``head.fc.*``) checkpoints."""
from torch import Tensor

from .layout import CONV_PATH_AT_INIT, Layout, attention_only_rates

_BLOCK = r'backbone\.stages\.(\d+)\.blocks\.(\d+)\.'
_OUR_BLOCK = r'backbone.stages.\1.blocks.\2.'


def unfold_to_official_order(weight: Tensor) -> Tensor:
    """Reorder the last dimension of a patch merging weight from
    ``nn.Unfold``'s order (channel-major, then the 2x2 offsets (dy, dx)
    row by row) to the official one (offset-major in the order (0, 0),
    (1, 0), (0, 1), (1, 1), then channel), which :class:`PatchMerging`
    uses.

    Args:
        weight (Tensor): The ``reduction`` weight ``(2C, 4C)`` or the
            ``norm`` weight or bias ``(4C, )``.

    Returns:
        Tensor: The same values in the official order.
    """
    by_offset = weight.unflatten(-1, (-1, 4)).transpose(-1, -2)
    return by_offset[..., [0, 2, 1, 3], :].flatten(-2)


SWIN_MMPRETRAIN_LAYOUT = Layout(
    name='swin_mmpretrain',
    description="mmpretrain's Swin Transformer (swin-tiny/small "
    'ImageClassifier checkpoints); the ACmix parts start at their '
    'initialisation, rates at (1, 0)',
    rules=[
        (r'backbone\.patch_embed\.(projection|norm)\.(weight|bias)',
         r'backbone.patch_embed.\1.\2', None),
        (_BLOCK + r'(norm1|norm2)\.(weight|bias)', _OUR_BLOCK + r'\3.\4',
         None),
        (_BLOCK + r'attn\.w_msa\.(qkv|proj)\.(weight|bias)',
         _OUR_BLOCK + r'attn.\3.\4', None),
        (_BLOCK + r'attn\.w_msa\.relative_position_bias_table',
         _OUR_BLOCK + r'attn.relative_position_bias_table', None),
        (_BLOCK + r'ffn\.layers\.0\.0\.(weight|bias)',
         _OUR_BLOCK + r'mlp.fc1.\3', None),
        (_BLOCK + r'ffn\.layers\.1\.(weight|bias)',
         _OUR_BLOCK + r'mlp.fc2.\3', None),
        # buffers the model recomputes (mmcls 0.x also saved the mask)
        (_BLOCK + r'attn\.(w_msa\.relative_position_index|attn_mask)', None,
         None),
        (r'backbone\.stages\.(\d+)\.downsample\.(reduction\.weight|'
         r'norm\.weight|norm\.bias)', r'backbone.stages.\1.downsample.\2',
         unfold_to_official_order),
        (r'backbone\.norm3\.(weight|bias)', r'backbone.norm3.\1', None),
        (r'head\.fc\.(weight|bias)', r'head.fc.\1', None),
    ],
    required=[
        f'backbone.patch_embed.{layer}.{param}'
        for layer in ('projection', 'norm') for param in ('weight', 'bias')
    ] + ['backbone.stages.0.blocks.0.attn.w_msa.qkv.weight'],
    block_pattern=_BLOCK,
    block_required=[
        f'{layer}.{param}'
        for layer in ('norm1', 'attn.w_msa.qkv', 'attn.w_msa.proj', 'norm2',
                      'ffn.layers.0.0', 'ffn.layers.1')
        for param in ('weight', 'bias')
    ] + ['attn.w_msa.relative_position_bias_table'],
    finalize=attention_only_rates,
    at_init=CONV_PATH_AT_INIT)
