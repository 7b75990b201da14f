"""Parameter and FLOP counts with mmengine's counter.

``mmengine.analysis.get_model_complexity_info`` runs mmengine's
``FlopAnalyzer``, which has no handle for ``F.scaled_dot_product_attention``
and silently counts it as 0 FLOPs, while an attention written as ``bmm``
(e.g. ``nn.MultiheadAttention`` in mmdet's PVT) is counted. :func:`complexity`
runs the same analyzer with a handle that counts the fused attention as the
two ``bmm`` it replaces, so models with and without fused attention compare
on equal terms. The same goes for the attention ops this project writes as
``torch.autograd.Function`` (traced as ``prim::PythonOp``), which mmengine
cannot see into: :data:`OP_HANDLES` counts each as its matrix products.
Likewise the in-place ``addmm_`` that mixes ACmix's two paths is counted as
the ``proj`` layer it computes.
"""
from math import prod
from typing import Any, List, Tuple

import torch.nn as nn
from mmengine.analysis import FlopAnalyzer, parameter_count
from mmengine.analysis.jit_handles import addmm_flop_jit, get_shape

from ..layers.acmix import paper_formulation


def attention_flop_jit(inputs: List[Any], outputs: List[Any]) -> int:
    """FLOPs (multiply-adds, as mmengine counts ``bmm``) of
    ``scaled_dot_product_attention(q, k, v)``: ``q @ k^T`` and
    ``attn @ v``."""
    *batch, queries, dims = get_shape(inputs[0])
    keys = get_shape(inputs[1])[-2]
    value_dims = get_shape(inputs[2])[-1]
    return prod(batch) * queries * keys * (dims + value_dims)


def sliding_attention_flop_jit(inputs: List[Any],
                               outputs: List[Any]) -> int:
    """FLOPs of ResNet-ACmix's sliding-window attention
    (:func:`mmacmix.layers.sliding_acmix.sliding_window_attention`): per
    output pixel and head, ``k*k`` logits and a ``k*k``-term weighted sum of
    ``d``-dim vectors, ``2 * k*k * d`` multiply-adds (the unfold formulation
    counted as ``bmm``)."""
    kernel_size = outputs[0].node().scalar_args()[0]
    return 2 * kernel_size**2 * prod(get_shape(outputs[0]))


def window_projection_flop_jit(inputs: List[Any],
                               outputs: List[Any]) -> int:
    """FLOPs of SAN-ACmix's projection of the unfolded key windows
    (:func:`mmacmix.layers.patchwise_acmix.window_projection`): per output
    pixel, ``r * k*k`` unfolded channels projected to ``G``,
    ``r * k*k * G`` multiply-adds (its norm's affine map and ReLU, like
    every elementwise op, are not counted)."""
    kernel_size = outputs[0].node().scalar_args()[0]
    channels = get_shape(inputs[0])[1]
    return channels * kernel_size**2 * prod(get_shape(outputs[0]))


def patchwise_aggregation_flop_jit(inputs: List[Any],
                                   outputs: List[Any]) -> int:
    """FLOPs of SAN-ACmix's patchwise aggregation
    (:func:`mmacmix.layers.patchwise_acmix.patchwise_aggregation`): per
    output pixel, the weights (``G -> G * k*k``, ``G * G * k*k``) and the
    ``k*k``-term weighted sum of every value channel (``C * k*k``)."""
    kernel_size = outputs[0].node().scalar_args()[0]
    groups = get_shape(inputs[0])[1]
    batch, channels, height, width = get_shape(outputs[0])
    return batch * height * width * kernel_size**2 * (groups**2 + channels)


OP_HANDLES = {
    'aten::scaled_dot_product_attention': attention_flop_jit,
    # the attention path's proj accumulated into the convolution path's
    # output (MixingRates.mix_projected), counted as the linear layer it is
    'aten::addmm_': addmm_flop_jit,
    'prim::PythonOp._SlidingWindowAttention': sliding_attention_flop_jit,
    'prim::PythonOp._WindowProjection': window_projection_flop_jit,
    'prim::PythonOp._PatchwiseAggregation': patchwise_aggregation_flop_jit,
}


def complexity(model: nn.Module, inputs: Any) -> Tuple[int, int]:
    """``(flops, params)`` of ``model(*inputs)``: mmengine's FlopAnalyzer
    (what ``get_model_complexity_info`` runs) with fused attention counted,
    and all parameters of ``model``."""
    # the architecture's count, whichever equivalent form runs
    with paper_formulation(model):
        analyzer = FlopAnalyzer(model, inputs)
        analyzer.set_op_handle(**OP_HANDLES)
        analyzer.unsupported_ops_warnings(False)
        analyzer.uncalled_modules_warnings(False)
        total = analyzer.total()
    return total, parameter_count(model)['']
