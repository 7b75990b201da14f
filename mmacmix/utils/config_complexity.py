"""Parameters and FLOPs (multiply-adds) of an mmdet, mmseg or mmpretrain
config, as the ACmix paper and OpenMMLab report them.

:func:`measure` builds the config's model in its ``default_scope`` without a
dataset and without ``init_weights`` (no pretrained checkpoint is read),
feeds one random image of the given size through the model's
``data_preprocessor`` and counts the forward pass with
:func:`mmacmix.utils.complexity.complexity`: mmengine's ``FlopAnalyzer``
(what ``mmengine.analysis.get_model_complexity_info`` runs) plus a handle for
``F.scaled_dot_product_attention``, which mmengine would count as 0.

What the forward pass is, per scope:

* mmpretrain, mmseg, single-stage mmdet: ``model(inputs, data_samples,
  mode='tensor')`` (mmseg drops the auxiliary head, as mmseg's get_flops).
* two-stage mmdet (Standard and Cascade RoI heads): mmdet 2.x's
  ``forward_dummy``, the convention of the Swin and ACmix papers' numbers:
  backbone, neck, RPN head, then ``rpn.max_per_img`` (1000) fixed proposals
  through every bbox head and the first 100 through every mask head. mmdet
  3.x's ``mode='tensor'`` instead takes whatever the (random) RPN proposes
  after NMS, and runs Cascade's mask heads on all proposals.
"""
import importlib
import os.path as osp
from typing import Sequence, Tuple

import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.hub import get_config
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import DefaultScope

from .complexity import complexity

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
    """A config file, or a ``package::path`` config of an installed
    OpenMMLab library (e.g. ``mmdet::swin/...py``)."""
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
