from .swin_acmix import SwinACmix

__all__ = ['SwinACmix']
