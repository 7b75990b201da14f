"""The plain ``nn.Unfold`` formulation of ResNet-ACmix's sliding-window
attention (the official code's), kept only as the oracle of the tests and
the baseline of ``tools/analysis/benchmark_unfold.py``.

It copies every key, value and positional encoding 49 times.
"""
import math

import torch.nn.functional as F

from mmacmix.layers.sliding_acmix import SlidingACmix


def unfold_attention(q, k, v, pe, kernel_size=7, stride=1, scale=1.):
    """The attention of :func:`mmacmix.layers.sliding_acmix.
    sliding_window_attention` as the official code computes it, on
    ``(N, d, H, W)`` queries, keys and values and a ``(1, d, H, W)``
    encoding, with the logit ``scale * q_i . (k_j + pe_i - pe_j)``
    (``pe_i`` included)."""
    n, d, height, width = q.shape
    pad = kernel_size // 2
    out_h, out_w = math.ceil(height / stride), math.ceil(width / stride)

    def windows(x):  # (n, d, H, W) -> (n, d, kernel_size**2, Ho, Wo)
        x = F.pad(x, [pad] * 4, mode='reflect')
        x = F.unfold(x, kernel_size, stride=stride)
        return x.view(x.shape[0], d, kernel_size**2, out_h, out_w)

    q = q[:, :, ::stride, ::stride] * scale
    pe_q = pe[:, :, ::stride, ::stride]
    logits = (q.unsqueeze(2) *
              (windows(k) + pe_q.unsqueeze(2) - windows(pe))).sum(1)
    weights = logits.softmax(1)
    return (weights.unsqueeze(1) * windows(v)).sum(2)


def unfold_qkv_attention(qkv, pe, kernel_size=7, stride=1, scale=1.):
    """:func:`unfold_attention` with the contract of
    ``sliding_window_attention``: ``(B, 3 * heads, d, H, W)`` projections
    to ``(B, heads, d, Ho, Wo)``."""
    batch, heads = qkv.shape[0], qkv.shape[1] // 3
    # (B * heads, d, H, W) each, as the official code views them
    q, k, v = (t.reshape(batch * heads, *t.shape[2:])
               for t in qkv.chunk(3, 1))
    out = unfold_attention(q, k, v, pe, kernel_size, stride, scale)
    return out.unflatten(0, (batch, heads))


class UnfoldACmix(SlidingACmix):
    """:class:`SlidingACmix` computing its attention with the oracle."""

    def _attend(self, qkv, pe, rate):
        return rate * unfold_qkv_attention(qkv, pe, self.kernel_att,
                                           self.stride, self.head_dims**-0.5)


def use_unfold_attention(model):
    """Switch every :class:`SlidingACmix` of ``model`` to the oracle, in
    place (weights unchanged), keeping every tensor for the backward pass as
    the official code does; returns ``model``."""
    for module in model.modules():
        if type(module) is SlidingACmix:
            module.__class__ = UnfoldACmix
            module.recompute = False  # the official code keeps everything
    return model
