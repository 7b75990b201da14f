"""The plain ``nn.Unfold`` formulation of ResNet-ACmix's sliding-window
attention (the official code's) as a layer, the oracle of the tests and the
baseline of ``.dev_scripts/benchmark_unfold.py``.

It copies every key, value and positional encoding 49 times. The
formulation itself is the library's export path
(:func:`mmacmix.layers.sliding_acmix.unfold_attention`).
"""
from mmacmix.layers.sliding_acmix import (SlidingACmix, unfold_attention,
                                          unfold_window_attention)

__all__ = [
    'unfold_attention', 'unfold_window_attention', 'use_unfold_attention'
]


class UnfoldACmix(SlidingACmix):
    """:class:`SlidingACmix` computing its attention with the oracle."""

    def _attend(self, qkv, pe, rate):
        return rate * unfold_window_attention(qkv, pe, self.kernel_att,
                                              self.stride,
                                              self.head_dims**-0.5,
                                              self.dilation)


def use_unfold_attention(model):
    """Switch every :class:`SlidingACmix` of ``model`` to the oracle, in
    place (weights unchanged), keeping every tensor for the backward pass as
    the official code does; returns ``model``."""
    for module in model.modules():
        if type(module) is SlidingACmix:
            module.__class__ = UnfoldACmix
            module.recompute = False  # the official code keeps everything
    return model
