"""ACmix operators; they need torch alone."""
from .acmix import ACmixConvPath, MixingRates
from .sr_acmix import SpatialReductionACmix
from .window_acmix import WindowACmix

__all__ = [
    'ACmixConvPath', 'MixingRates', 'SpatialReductionACmix', 'WindowACmix'
]
