"""The base of the backbones: the deprecated ``pretrained``,
``frozen_stages`` and ``norm_eval``."""
import warnings
from typing import List, Optional, Sequence, Union

import torch.nn as nn
from mmengine.model import BaseModule
from torch.nn.modules.batchnorm import _BatchNorm

from .common import check_frozen_stages, resolve_out_indices

FrozenPart = Union[nn.Module, nn.Parameter]


def resolve_pretrained(init_cfg, pretrained: Optional[str], owner: str):
    """The ``init_cfg`` of a backbone given the deprecated ``pretrained``
    too, as mmdet's and mmseg's backbones do: a path or URL becomes
    ``dict(type='Pretrained', checkpoint=pretrained)``, with their warning.

    mmseg's ``EncoderDecoder`` passes its own ``pretrained`` (its configs'
    ImageNet ResNet-50, say) to the backbone, so configs that swap only the
    backbone reach here with it.

    Args:
        init_cfg (dict | list[dict], optional): The backbone's
            ``init_cfg``.
        pretrained (str, optional): A checkpoint path or URL, or None.
        owner (str): The backbone's class name, for the errors.

    Returns:
        dict | list[dict] | None: The ``init_cfg`` to use.

    Raises:
        ValueError: both are given.
        TypeError: ``pretrained`` is neither a str nor None.
    """
    if pretrained is None:
        return init_cfg
    if init_cfg:
        raise ValueError(
            f'{owner}: init_cfg and pretrained cannot be specified at the '
            f'same time, got init_cfg={init_cfg!r} and '
            f'pretrained={pretrained!r} (mmseg\'s segmentors pass their '
            f'model-level pretrained to the backbone: set it to None)')
    if not isinstance(pretrained, str):
        raise TypeError(f'{owner}: pretrained must be a str or None, got '
                        f'{pretrained!r}')
    warnings.warn('DeprecationWarning: pretrained is deprecated, '
                  'please use "init_cfg" instead')
    return dict(type='Pretrained', checkpoint=pretrained)


class ACmixBackbone(BaseModule):
    """A backbone whose first stages can be frozen and whose BatchNorms can
    keep their statistics, through every ``train()`` call.

    ``pretrained`` is the deprecated form of ``init_cfg`` that mmdet's and
    mmseg's backbones accept (:func:`resolve_pretrained`).

    Subclasses call :meth:`_set_stages` (and set ``norm_eval`` if they have
    BatchNorms), say what to freeze with :meth:`_stem_parts` and
    :meth:`_stage_parts`, and call :meth:`_freeze_stages` once built.
    """
    # keep every BatchNorm in eval mode while training (frozen statistics)
    norm_eval = False

    def __init__(self, init_cfg=None, pretrained: Optional[str] = None):
        super().__init__(
            resolve_pretrained(init_cfg, pretrained, type(self).__name__))

    def _set_stages(self, num_stages: int, out_indices: Sequence[int],
                    frozen_stages: int) -> None:
        """Check and keep ``out_indices`` (as non-negative stage indices)
        and ``frozen_stages``."""
        owner = type(self).__name__
        self.out_indices = resolve_out_indices(out_indices, num_stages, owner)
        check_frozen_stages(frozen_stages, num_stages, owner)
        self.frozen_stages = frozen_stages

    def _stem_parts(self) -> List[FrozenPart]:
        """What ``frozen_stages >= 0`` freezes: the modules and parameters
        before the first stage."""
        raise NotImplementedError

    def _stage_parts(self, index: int) -> List[FrozenPart]:
        """What ``frozen_stages > index`` freezes: stage ``index`` and the
        modules that only its output feeds."""
        raise NotImplementedError

    def _freeze_stages(self) -> None:
        if self.frozen_stages < 0:
            return
        parts = self._stem_parts()
        for i in range(self.frozen_stages):
            parts += self._stage_parts(i)
        for part in parts:
            if isinstance(part, nn.Parameter):
                part.requires_grad = False
                continue
            part.eval()
            for param in part.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True):
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self
