from . import conv  # noqa: F401  (registers ACmixConv2d)
from .backbones import *  # noqa: F401,F403
