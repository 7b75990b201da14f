from .pvt_acmix import PVTACmix
from .swin_acmix import SwinACmix

__all__ = ['PVTACmix', 'SwinACmix']
