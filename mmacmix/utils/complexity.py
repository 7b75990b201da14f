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
"""
from math import prod
from typing import Any, List, Tuple

import torch.nn as nn
from mmengine.analysis import FlopAnalyzer, parameter_count
from mmengine.analysis.jit_handles import get_shape


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


OP_HANDLES = {
    'aten::scaled_dot_product_attention': attention_flop_jit,
    'prim::PythonOp._SlidingWindowAttention': sliding_attention_flop_jit,
}


def complexity(model: nn.Module, inputs: Any) -> Tuple[int, int]:
    """``(flops, params)`` of ``model(*inputs)``: mmengine's FlopAnalyzer
    (what ``get_model_complexity_info`` runs) with fused attention counted,
    and all parameters of ``model``."""
    analyzer = FlopAnalyzer(model, inputs)
    analyzer.set_op_handle(**OP_HANDLES)
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    return analyzer.total(), parameter_count(model)['']
