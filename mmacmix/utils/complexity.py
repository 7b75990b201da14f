"""Parameter and FLOP counts with mmengine's counter.

``mmengine.analysis.get_model_complexity_info`` runs mmengine's
``FlopAnalyzer``, which has no handle for ``F.scaled_dot_product_attention``
and silently counts it as 0 FLOPs, while an attention written as ``bmm``
(e.g. ``nn.MultiheadAttention`` in mmdet's PVT) is counted. :func:`complexity`
runs the same analyzer with a handle that counts the fused attention as the
two ``bmm`` it replaces, so models with and without fused attention compare
on equal terms.
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


def complexity(model: nn.Module, inputs: Any) -> Tuple[int, int]:
    """``(flops, params)`` of ``model(*inputs)``: mmengine's FlopAnalyzer
    (what ``get_model_complexity_info`` runs) with fused attention counted,
    and all parameters of ``model``."""
    analyzer = FlopAnalyzer(model, inputs)
    analyzer.set_op_handle('aten::scaled_dot_product_attention',
                           attention_flop_jit)
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    return analyzer.total(), parameter_count(model)['']
