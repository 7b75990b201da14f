"""Conversion of official checkpoints to this project's layout: one module
per source layout, tried in the order of :data:`LAYOUTS`."""
from .convert import (LAYOUTS, check_destination, conversion_report,
                      convert_checkpoint, convert_state_dict, to_plain)
from .layout import Layout
from .loading import (ConversionError, extract_state_dict,
                      load_official_checkpoint)
from .pvt_v1_official import PVT_V1_LAYOUT
from .resnet_acmix_official import RESNET_ACMIX_LAYOUT, convert_acmix_module
from .san_official import SAN_LAYOUT
from .swin_acmix_official import SWIN_ACMIX_LAYOUT
from .swin_mmpretrain import SWIN_MMPRETRAIN_LAYOUT
from .swin_official import SWIN_LAYOUT
from .swin_timm import SWIN_TIMM_LAYOUT

__all__ = [
    'ConversionError', 'LAYOUTS', 'Layout', 'PVT_V1_LAYOUT',
    'RESNET_ACMIX_LAYOUT', 'SAN_LAYOUT', 'SWIN_ACMIX_LAYOUT',
    'SWIN_LAYOUT', 'SWIN_MMPRETRAIN_LAYOUT', 'SWIN_TIMM_LAYOUT',
    'check_destination', 'conversion_report', 'convert_acmix_module',
    'convert_checkpoint', 'convert_state_dict', 'extract_state_dict',
    'load_official_checkpoint', 'to_plain'
]
