from .pvt_acmix import PVTACmix
from .resnet_acmix import ResNetACmix
from .san_acmix import SANACmix
from .swin_acmix import SwinACmix

__all__ = ['PVTACmix', 'ResNetACmix', 'SANACmix', 'SwinACmix']
