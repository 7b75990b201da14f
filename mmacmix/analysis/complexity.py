"""Parameters and FLOPs (multiply-adds) of a model (:func:`complexity`) and
of an mmdet, mmseg or mmpretrain config (:func:`measure`), as the ACmix
paper and OpenMMLab report them.

:func:`complexity` runs mmengine's ``FlopAnalyzer`` (what
``get_model_complexity_info`` runs) with handles for what it cannot see:
``F.scaled_dot_product_attention`` (it would count 0) as the two ``bmm`` it
replaces, this project's attention ops written as ``torch.autograd.Function``
as their matrix products, and the in-place ``addmm_`` that mixes ACmix's two
paths as the ``proj`` layer it computes; it counts the paper's form of every
ACmix layer. :func:`measure` builds a config's model without a dataset or
``init_weights`` and counts one forward pass of a random image; the forward
pass of each scope is described in docs/model_zoo.md.
"""
import importlib
import os.path as osp
from math import prod
from typing import Any, List, Sequence, Tuple

import torch
import torch.nn as nn
from mmengine.analysis import FlopAnalyzer, parameter_count
from mmengine.analysis.jit_handles import addmm_flop_jit, get_shape
from mmengine.config import Config
from mmengine.hub import get_config
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import DefaultScope

from ..layers import paper_formulation
from ..utils.package_files import find_config


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
    # output (ACmixOperator.mix), counted as the linear layer it is
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


# paper conventions: COCO test scale, ADE20K 512x2048 (UperNet), ImageNet 224
# what a bad config or input raises (a missing file, an unknown model type,
# a backbone's checks of its arguments and input size): the tools turn it
# into one error line
BAD_INPUT = (FileNotFoundError, KeyError, TypeError, ValueError)
DEFAULT_SHAPES = {
    'mmdet': (800, 1333),
    'mmseg': (512, 2048),
    'mmpretrain': (224, 224),
}
SAMPLE_TYPES = {
    'mmdet': 'mmdet.structures.DetDataSample',
    'mmseg': 'mmseg.structures.SegDataSample',
    'mmpretrain': 'mmpretrain.structures.DataSample',
}
NUM_MASK_ROIS = 100  # mmdet's forward_dummy: masks of the first 100 rois


def _import(dotted: str):
    module, name = dotted.rsplit('.', 1)
    return getattr(importlib.import_module(module), name)


class TensorForward(nn.Module):
    """``model(inputs, data_samples, mode='tensor')`` as a one-input module
    for the tracer."""

    def __init__(self, model: nn.Module, data_samples: list):
        super().__init__()
        self.model = model
        self.data_samples = data_samples

    def forward(self, inputs: torch.Tensor):
        return self.model(inputs, self.data_samples, mode='tensor')


class TwoStageDummy(nn.Module):
    """mmdet 2.x's ``TwoStageDetector.forward_dummy``: fixed proposals, so
    the count does not depend on what a randomly initialised RPN keeps."""

    def __init__(self, model: nn.Module, img_shape: Tuple[int, int]):
        super().__init__()
        self.model = model
        rpn_cfg = model.test_cfg.get('rpn', {}) if model.test_cfg else {}
        num = rpn_cfg.get('max_per_img', 1000)
        # rois (image index 0, x1, y1, x2, y2): valid boxes spread over the
        # image (their values change no count)
        h, w = img_shape
        t = torch.linspace(0, 0.5, num)
        self.register_buffer(
            'rois',
            torch.stack([0 * t, t * w, t * h, (t + 0.5) * w, (t + 0.5) * h],
                        1),
            persistent=False)

    def forward(self, inputs: torch.Tensor):
        model, roi_head = self.model, self.model.roi_head
        x = model.extract_feat(inputs)
        outs = [model.rpn_head(x)]
        rois = self.rois
        # Standard heads take (x, rois), Cascade ones (stage, x, rois)
        stages = [()] if not hasattr(roi_head, 'num_stages') else [
            (stage, ) for stage in range(roi_head.num_stages)
        ]
        if roi_head.with_bbox:
            for stage in stages:
                res = roi_head._bbox_forward(*stage, x, rois)
                outs.append((res['cls_score'], res['bbox_pred']))
        if roi_head.with_mask:
            for stage in stages:
                res = roi_head._mask_forward(*stage, x, rois[:NUM_MASK_ROIS])
                outs.append(res['mask_preds'])
        return outs


def _is_two_stage(model: nn.Module) -> bool:
    """An RPN and a Standard- or Cascade-like RoI head."""
    roi_head = getattr(model, 'roi_head', None)
    return (getattr(model, 'with_rpn', False)
            and hasattr(roi_head, '_bbox_forward')
            and (not roi_head.with_mask or hasattr(roi_head, '_mask_forward')))


def read_config(config: str) -> Config:
    """A config file, an installed mmacmix config by name
    (:func:`~mmacmix.utils.package_files.find_config`), or a
    ``package::path`` config of an installed OpenMMLab library (e.g.
    ``mmdet::swin/...py``)."""
    config = find_config(config)
    if '::' in config:
        return get_config(config)
    if not osp.isfile(config):
        raise FileNotFoundError(f'no config file {config!r}')
    return Config.fromfile(config)


def build_model(cfg: Config,
                inference: bool = True) -> Tuple[nn.Module, str]:
    """The config's model, built in its scope, not initialised
    (``init_cfg`` checkpoints are not read). With ``inference``: in eval
    mode and without mmseg's auxiliary head (unused at inference)."""
    scope = cfg.get('default_scope', 'mmdet')
    if scope not in DEFAULT_SHAPES:
        raise ValueError(f'unsupported default_scope {scope!r}: the '
                         f'config must be one of {sorted(DEFAULT_SHAPES)}')
    models = importlib.import_module(f'{scope}.registry').MODELS
    # built in the config's scope, without changing the process's default
    with DefaultScope.overwrite_default_scope(scope):
        model = revert_sync_batchnorm(models.build(cfg.model))
    if not inference:
        return model, scope
    if scope == 'mmseg' and hasattr(model, 'auxiliary_head'):
        model.auxiliary_head = None
    return model.eval(), scope


def measure(cfg: Config, shape: Sequence[int] = None) -> dict:
    """Parameters and FLOPs (multiply-adds) of ``cfg.model`` on one
    ``shape = (H, W)`` image (default: the scope's paper convention).

    Returns a dict with ``params`` (all parameters, each once), ``flops``,
    ``scope``, ``shape`` (as asked), ``input_shape`` (after the
    data_preprocessor's padding) and ``forward`` (what was traced).
    """
    if isinstance(cfg, str):
        cfg = Config.fromfile(cfg)
    model, scope = build_model(cfg)
    h, w = shape or DEFAULT_SHAPES[scope]
    meta = dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w))
    if scope == 'mmdet':
        meta['scale_factor'] = (1.0, 1.0)
    gen = torch.Generator().manual_seed(0)
    batch = dict(
        inputs=[torch.randint(0, 256, (3, h, w), generator=gen,
                              dtype=torch.uint8)],
        data_samples=[_import(SAMPLE_TYPES[scope])(metainfo=meta)])
    with torch.no_grad():
        data = model.data_preprocessor(batch, False)
    inputs = data['inputs']
    if scope == 'mmdet' and _is_two_stage(model):
        wrapper, forward = TwoStageDummy(model, (h, w)), 'forward_dummy'
    else:
        wrapper = TensorForward(model, data['data_samples'])
        forward = "mode='tensor'"
    flops, params = complexity(wrapper, (inputs, ))
    return dict(params=params, flops=flops, scope=scope, shape=(h, w),
                input_shape=tuple(inputs.shape[-2:]), forward=forward)
