"""The plain ``nn.Unfold`` formulation of SAN's patchwise attention (SAN's
own code), kept only as the oracle of the SAN-ACmix tests and benchmark,
and the gradient check of its two custom autograd functions.

It unfolds the keys and the values of the whole batch (``k*k`` copies of
each) and runs SAN's weight MLP as ordinary modules.
"""
import torch
import torch.nn.functional as F

from mmacmix.layers.patchwise_acmix import (PatchwiseACmix,
                                            patchwise_aggregation,
                                            window_projection)


def unfold_patchwise_attention(module, q, k, v):
    """The attention path of ``module`` (a :class:`PatchwiseACmix`) as SAN
    computes it: ``gamma`` on ``[q_i, k_j for j in R(i)]`` (norms called as
    modules, so in training they use and update batch statistics), then the
    weighted sum of the unfolded values."""
    batch, _, height, width = q.shape
    kernel = module.kernel_att
    pad = [kernel // 2] * 4
    keys = F.unfold(F.pad(k, pad, mode='reflect'), kernel)
    x = torch.cat([q, keys.view(batch, -1, height, width)], 1)
    x = module.attn_conv1(F.relu(module.attn_norm1(x)))
    weights = module.attn_conv2(F.relu(module.attn_norm2(x)))
    groups = module.weight_channels
    weights = weights.view(batch, 1, groups, kernel**2, height * width)
    values = F.unfold(F.pad(v, pad, mode='reflect'), kernel)
    values = values.view(batch, -1, groups, kernel**2, height * width)
    return (values * weights).sum(3).view(batch, -1, height, width)


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
