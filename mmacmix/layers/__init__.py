"""ACmix operators; they need torch alone."""
from .acmix import ACmixConvPath, MixingRates
from .patchwise_acmix import PatchwiseACmix
from .sliding_acmix import SlidingACmix, sliding_window_attention
from .sr_acmix import SpatialReductionACmix
from .window_acmix import WindowACmix

__all__ = [
    'ACmixConvPath', 'MixingRates', 'PatchwiseACmix', 'SlidingACmix',
    'SpatialReductionACmix', 'WindowACmix', 'sliding_window_attention'
]
