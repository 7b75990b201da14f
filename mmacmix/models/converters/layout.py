"""The description of an official checkpoint layout: :class:`Layout`."""
import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

import torch
from torch import Tensor

Rule = Tuple[str, Optional[str], Optional[Callable[[Tensor], Tensor]]]


@dataclass
class Layout:
    """An official checkpoint layout.

    Args:
        name (str): Short name, stored in the converted ``meta``.
        description (str): What checkpoints have this layout.
        rules (list[tuple]): ``(pattern, replacement, transform)``: a key that
            fully matches the regex ``pattern`` is renamed by ``re.sub`` with
            ``replacement`` (None drops the key) and its value becomes
            ``transform(value)`` (None keeps it). The first matching rule
            wins; a key that matches none is unexpected.
        required (list[str]): Keys that must be present.
        block_pattern (str): Regex matching the prefix of a block's keys,
            e.g. ``layers.0.blocks.1.``.
        block_required (list[str]): Keys (after the prefix) that every block
            found must have.
        finalize (callable, optional): ``finalize(converted)`` adds entries
            to the converted state dict.
        at_init (str): What of the target model the layout does not hold
            (it keeps the model's initialisation), as the converter reports
            it. Defaults to ``'nothing'``.
    """
    name: str
    description: str
    rules: List[Rule]
    required: List[str]
    block_pattern: str
    block_required: List[str]
    finalize: Optional[Callable[[Dict[str, Tensor]], None]] = None
    at_init: str = 'nothing'

    def check(self, state: Dict[str, Tensor]) -> Tuple[List[str], List[str]]:
        """Return the ``(missing, unexpected)`` keys of ``state``."""
        unexpected = [key for key in state if self._rule(key) is None]
        matches = (re.match(self.block_pattern, key) for key in state)
        blocks = sorted({match.group(0) for match in matches if match})
        missing = [key for key in self.required if key not in state]
        missing += [
            block + key for block in blocks for key in self.block_required
            if block + key not in state
        ]
        return missing, unexpected

    def dropped(self, state: Dict[str, Tensor]) -> List[str]:
        """The keys of ``state`` (which fits this layout) that are not
        loaded: buffers the model recomputes."""
        return [key for key in state if self._rule(key)[1] is None]

    def convert(self, state: Dict[str, Tensor]) -> Dict[str, Tensor]:
        converted = OrderedDict()
        for key, value in state.items():
            pattern, replacement, transform = self._rule(key)
            if replacement is not None:
                converted[re.sub(pattern, replacement, key)] = (
                    transform(value) if transform else value)
        if self.finalize:
            self.finalize(converted)
        return converted

    def _rule(self, key: str) -> Optional[Rule]:
        return next(
            (rule for rule in self.rules if re.fullmatch(rule[0], key)), None)


# q, k, v are renamed to these keys (``...qkv_part1.weight``, ...), then
# fused into one ``qkv`` conv by :func:`fuse_qkv`
QKV_PART = '.qkv_part{}.'


def fuse_qkv(converted: Dict[str, Tensor]) -> None:
    """Concatenate the q, k and v convolutions (official ``conv1``,
    ``conv2``, ``conv3`` of an operator, renamed ``qkv_part1/2/3``) into the
    operator's ``qkv``, in place."""
    for key in [k for k in converted if QKV_PART.format(1) in k]:
        parts = [
            converted.pop(key.replace(QKV_PART.format(1),
                                      QKV_PART.format(i)))
            for i in (1, 2, 3)
        ]
        converted[key.replace(QKV_PART.format(1), '.qkv.')] = torch.cat(
            parts, 0)


# what the layouts without ACmix's convolution path leave at init
CONV_PATH_AT_INIT = ("every block's convolution path (fc; dep_conv at its "
                     'shift kernels); rates set to (1, 0)')


def attention_only_rates(converted: Dict[str, Tensor]) -> None:
    """A plain Swin, PVT or SAN has no convolution path: start every block at
    rates (1, 0), so the converted model computes exactly the pretrained
    model, and let ``rate2`` (which gets gradients at once) learn the mix.
    ``fc`` and ``dep_conv`` keep the model's initialisation (shift
    kernels)."""
    for key in list(converted):
        attention = re.fullmatch(r'(.*\.(?:attn|acmix)\.)(qkv|q)\.weight',
                                 key)
        if attention:
            converted[attention.group(1) + 'rates.rate1'] = torch.ones(1)
            converted[attention.group(1) + 'rates.rate2'] = torch.zeros(1)
