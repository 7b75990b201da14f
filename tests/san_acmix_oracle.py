"""SAN-ACmix with the plain ``nn.Unfold`` formulation of SAN's patchwise
attention (SAN's own code,
:func:`mmacmix.layers.patchwise_acmix.unfold_patchwise_attention`, which the
layer also runs while exporting): the oracle of the SAN-ACmix tests and
benchmark, and the gradient check of its two custom autograd functions.
"""
import torch

from mmacmix.layers.patchwise_acmix import (PatchwiseACmix,
                                            patchwise_aggregation,
                                            unfold_patchwise_attention,
                                            window_projection)


class UnfoldPatchwiseACmix(PatchwiseACmix):
    """:class:`PatchwiseACmix` computing its attention with the oracle."""

    def _attend(self, q, k, v):
        return unfold_patchwise_attention(self, q, k, v)


def use_unfold_attention(model):
    """Switch every :class:`PatchwiseACmix` of ``model`` to the oracle, in
    place (weights unchanged); returns ``model``."""
    for module in model.modules():
        if type(module) is PatchwiseACmix:
            module.__class__ = UnfoldPatchwiseACmix
    return model


def gradcheck_patchwise_functions(device='cpu'):
    """``gradcheck`` of :func:`window_projection` and
    :func:`patchwise_aggregation` on small float64 inputs on ``device``."""
    torch.manual_seed(0)
    kwargs = dict(dtype=torch.float64, device=device, requires_grad=True)
    keys = torch.randn(2, 2, 5, 6, **kwargs)  # 3x4 outputs, k = 3
    scale, shift = torch.randn(18, **kwargs), torch.randn(18, **kwargs)
    weight = torch.randn(3, 18, **kwargs)
    assert torch.autograd.gradcheck(
        lambda *t: window_projection(*t, 3), (keys, scale, shift, weight))
    hidden = torch.randn(2, 2, 3, 4, **kwargs)
    values = torch.randn(2, 4, 5, 6, **kwargs)
    weight, bias = torch.randn(18, 2, **kwargs), torch.randn(18, **kwargs)
    assert torch.autograd.gradcheck(
        lambda *t: patchwise_aggregation(*t, 3),
        (hidden, values, weight, bias))
