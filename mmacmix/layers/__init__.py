"""ACmix operators; they need torch alone."""
from .acmix import ACmixConvPath, MixingRates
from .window_acmix import WindowACmix

__all__ = ['ACmixConvPath', 'MixingRates', 'WindowACmix']
