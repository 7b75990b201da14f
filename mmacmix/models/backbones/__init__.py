from .pvt_acmix import PVTACmix
from .resnet_acmix import ResNetACmix
from .swin_acmix import SwinACmix

__all__ = ['PVTACmix', 'ResNetACmix', 'SwinACmix']
