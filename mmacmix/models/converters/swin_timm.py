"""timm's Swin Transformer (``swin_tiny/small_patch4_window7_224``) state
dicts: the official keys, but patch merging starts the next stage
(``layers.{i}.downsample``, i >= 1) and the classifier is ``head.fc``."""
from .layout import CONV_PATH_AT_INIT, Layout, attention_only_rates
from .swin_official import (BLOCK, SWIN_BLOCK_REQUIRED, SWIN_BODY_RULES,
                            SWIN_REQUIRED)


def _previous_stage(match) -> str:
    """timm's ``layers.{i}.downsample.X`` (before stage i) as ours,
    ``backbone.stages.{i-1}.downsample.X`` (after stage i-1)."""
    stage, param = match.groups()
    return f'backbone.stages.{int(stage) - 1}.downsample.{param}'


SWIN_TIMM_LAYOUT = Layout(
    name='swin_timm',
    description="timm's Swin Transformer (swin_tiny/small_patch4_window7_"
    '224); the ACmix parts start at their initialisation, rates at (1, 0)',
    rules=SWIN_BODY_RULES + [
        (r'layers\.([1-9]\d*)\.downsample\.((?:reduction|norm)\.'
         r'(?:weight|bias))', _previous_stage, None),
        (r'head\.fc\.(weight|bias)', r'head.fc.\1', None),
    ],
    required=SWIN_REQUIRED + ['layers.1.downsample.reduction.weight'],
    block_pattern=BLOCK,
    block_required=SWIN_BLOCK_REQUIRED,
    finalize=attention_only_rates,
    at_init=CONV_PATH_AT_INIT)
