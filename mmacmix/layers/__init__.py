"""ACmix operators; they need torch alone."""
from .acmix import ACmixConvPath, ACmixOperator, MixingRates, paper_formulation
from .acmix_conv import ACmixConv2d, swap_resnet_convs
from .exporting import is_exporting
from .patchwise_acmix import PatchwiseACmix
from .sliding_acmix import SlidingACmix, sliding_window_attention
from .sr_acmix import SpatialReductionACmix
from .window_acmix import WindowACmix

__all__ = [
    'ACmixConv2d', 'ACmixConvPath', 'ACmixOperator', 'MixingRates',
    'PatchwiseACmix', 'SlidingACmix', 'SpatialReductionACmix', 'WindowACmix',
    'is_exporting', 'paper_formulation', 'sliding_window_attention',
    'swap_resnet_convs'
]
