"""ACmix backbones in mmdet's and mmseg's own detectors and segmentors
(issue 21): their configs with only the backbone replaced, and the channels
docs/acmix_in_your_detector.md says to change, train (loss, backward into
the backbone) and predict on small images, run as mmdet's own detector
tests run theirs (``mmdet.testing.demo_mm_inputs``).

The page's snippets are read off the page and run as written; its channel
table is checked against the built backbones; then every family, in a
small arch, runs in every kind of detector and segmentor the page names.
"""
import ast
import copy
import re

import pytest
import torch
from mmdet.registry import MODELS as DET_MODELS
from mmdet.testing import demo_mm_inputs
from mmdet.utils import register_all_modules as register_mmdet
from mmengine.config import Config, ConfigDict
from mmengine.hub import get_config
from mmengine.registry import DefaultScope
from mmengine.structures import PixelData
from mmseg.registry import MODELS as SEG_MODELS
from mmseg.structures import SegDataSample
from mmseg.utils import register_all_modules as register_mmseg

import mmacmix  # noqa: F401  (registers the backbones)

from helpers import REPO_ROOT

register_mmdet(init_default_scope=False)
register_mmseg(init_default_scope=False)

PAGE = REPO_ROOT / 'docs' / 'acmix_in_your_detector.md'
REGISTRIES = {'mmdet': DET_MODELS, 'mmseg': SEG_MODELS}
FAMILIES = ('SwinACmix', 'PVTACmix', 'ResNetACmix', 'SANACmix')

# the configs of each kind the page names, for each family in turn: every
# family runs in every kind, every config at least once (DINO in its
# snippet only: 15-20 s a run on CPU)
FASTER_RCNN = 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'
DETR = 'mmdet::detr/detr_r50_8xb2-150e_coco.py'
KINDS = {
    'two-stage': (FASTER_RCNN, ) * 4,
    'one-stage': ('mmdet::fcos/fcos_r50-caffe_fpn_gn-head_1x_coco.py',
                  'mmdet::atss/atss_r50_fpn_1x_coco.py',
                  'mmdet::gfl/gfl_r50_fpn_1x_coco.py',
                  'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'),
    'DETR-style': (DETR, ) * 4,
    'UperNet': ('mmseg::upernet/'
                'upernet_r50_4xb4-80k_ade20k-512x512.py', ) * 4,
    'DeepLabV3+': ('mmseg::deeplabv3plus/'
                   'deeplabv3plus_r50-d8_4xb4-80k_ade20k-512x512.py', ) * 4,
    'PSPNet': ('mmseg::pspnet/pspnet_r50-d8_4xb4-80k_ade20k-512x512.py', ) * 4,
    'SegFormer head': ('mmseg::segformer/'
                       'segformer_mit-b0_8xb2-160k_ade20k-512x512.py', ) * 4,
}

# small archs of the families (as tests/test_backbone_args.py's); SAN-ACmix
# with 3x3 footprints, whose smallest input (33 px) fits the 64 px images
SMALL_ARCHS = {
    'SwinACmix': dict(
        arch=dict(embed_dims=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 2]),
        drop_path_rate=0.),
    'PVTACmix': dict(
        arch=dict(embed_dims=[16, 16, 32, 32], depths=[1, 1, 1, 1],
                  num_heads=[1, 1, 2, 2], sr_ratios=[8, 4, 2, 1],
                  mlp_ratios=[2, 2, 2, 2]),
        drop_path_rate=0.),
    'ResNetACmix': dict(depth=26, stem_channels=8, base_channels=4),
    'SANACmix': dict(depth=10, stem_channels=8,
                     stage_channels=(32, 32, 32, 32, 32),
                     kernel_att=(3, 3, 3, 3, 3)),
}


def python_blocks(text):
    """The ```python blocks of Markdown ``text``."""
    return re.findall(r'^```python\n(.*?)^```', text, re.S | re.M)


def family_table(text):
    """``{type: (arch kwargs, out_indices, channels)}`` from the page's
    table of each family's outputs."""
    table = {}
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip().strip('|').split('|')]
        arch_key = len(cells) == 5 and re.match(r'`(\w+)=', cells[2])
        if not arch_key:  # the header, its rule, other tables
            continue
        key = arch_key.group(1)
        archs = [ast.literal_eval(value) for value in
                 re.findall(r"`(?:\w+=)?('\w+'|\d+)`", cells[2])]
        table[cells[1].strip('`')] = (
            [{key: arch} for arch in archs],
            ast.literal_eval(cells[3].strip('`')),
            [int(channels) for channels in cells[4].split(',')])
    return table


PAGE_TEXT = PAGE.read_text()
SNIPPETS = python_blocks(PAGE_TEXT)
TABLE = family_table(PAGE_TEXT)


def snippet_id(snippet):
    base = re.search(r"_base_ = '(\w+)::[\w+-]+/([\w.+-]+)\.py'", snippet)
    family = re.search(r"type='(\w+ACmix)'", snippet).group(1)
    return f'{base.group(2)}-{family}'


def fit_channels(model, channels):
    """The page's rule: the neck takes the backbone's maps (one per
    ``out_indices``), or each mmseg head the channels of the maps its
    ``in_index`` picks (DeepLabV3+'s ``c1_in_channels``: map 0).

    Args:
        model (ConfigDict): A detector's or segmentor's config, changed in
            place.
        channels (list[int]): Channels of the backbone's outputs.
    """
    if 'neck' in model:
        assert len(model.neck.in_channels) == len(channels)
        model.neck.in_channels = list(channels)
        return
    for head in (model.decode_head, model.get('auxiliary_head')):
        if head is None:
            continue
        index = head.in_index
        head.in_channels = ([channels[i] for i in index] if isinstance(
            index, (list, tuple)) else channels[index])
        if 'c1_in_channels' in head:
            head.c1_in_channels = channels[0]


def single_process_norms(cfg):
    """``cfg`` with mmseg's SyncBN (distributed training) as BN: SyncBN
    needs a process group, as in mmseg's own tests."""
    if isinstance(cfg, dict):
        return {key: 'BN' if key == 'type' and value == 'SyncBN' else
                single_process_norms(value) for key, value in cfg.items()}
    if isinstance(cfg, (list, tuple)):
        return type(cfg)(single_process_norms(value) for value in cfg)
    return cfg


def seg_inputs(batch_size, size, num_classes):
    """mmseg's counterpart of ``demo_mm_inputs``: random images and
    semantic maps of ``size`` x ``size`` pixels."""
    generator = torch.Generator().manual_seed(0)
    packed = dict(inputs=[], data_samples=[])
    for _ in range(batch_size):
        packed['inputs'].append(torch.randint(
            0, 256, (3, size, size), dtype=torch.uint8, generator=generator))
        sample = SegDataSample(metainfo=dict(
            img_shape=(size, size), ori_shape=(size, size),
            pad_shape=(size, size)))
        sample.gt_sem_seg = PixelData(data=torch.randint(
            0, num_classes, (1, size, size), generator=generator))
        packed['data_samples'].append(sample)
    return packed


def train_and_predict(model_cfg, scope):
    """Build ``model_cfg`` in ``scope``, run a train step on small images
    (loss, backward: a gradient must reach the backbone's first parameter,
    so it crosses every stage) and a prediction, and check what the
    prediction holds.

    Args:
        model_cfg (ConfigDict): A detector's or segmentor's config.
        scope (str): ``'mmdet'`` or ``'mmseg'``.

    Returns:
        nn.Module: The model.
    """
    torch.manual_seed(0)
    if scope == 'mmseg':
        model_cfg = ConfigDict(single_process_norms(model_cfg))
    if model_cfg.type == 'DINO':
        # DINO picks its queries among the encoder's tokens, 85 at 64 px
        # (the config's 900 need 256 px: 40 s a run on CPU)
        model_cfg.num_queries = 64
    with DefaultScope.overwrite_default_scope(scope):
        model = REGISTRIES[scope].build(model_cfg)
    # 64 px, or 128 where the backbone needs more (SAN-ACmix's footprints)
    size = 64 if getattr(model.backbone, 'min_input_size', 0) <= 64 else 128
    if scope == 'mmdet':
        batch_size = 1
        packed = demo_mm_inputs(1, [(3, size, size)])
    else:
        # two images: the heads' BatchNorms see 1x1 maps (pooled context)
        batch_size = 2
        packed = seg_inputs(2, size, model.decode_head.num_classes)
        # mmseg's configs pad training batches to their 512x512 crops
        model.data_preprocessor.size = (size, size)

    data = model.data_preprocessor(packed, True)
    loss, _ = model.parse_losses(model(**data, mode='loss'))
    assert torch.isfinite(loss)
    loss.backward()
    first = next(model.backbone.parameters())
    assert first.grad is not None and first.grad.abs().sum() > 0

    model.eval()
    with torch.no_grad():
        results = model(**model.data_preprocessor(packed, False),
                        mode='predict')
    assert len(results) == batch_size
    for result in results:
        if scope == 'mmseg':
            num_classes = model.decode_head.num_classes
            assert result.seg_logits.data.shape == (num_classes, size, size)
            assert result.pred_sem_seg.data.shape == (1, size, size)
            continue
        found = result.pred_instances
        assert found.bboxes.shape == (len(found), 4)
        assert found.scores.shape == found.labels.shape == (len(found), )
    return model


def test_the_page_covers_every_family_and_kind():
    assert len(SNIPPETS) == 8
    assert sorted(TABLE) == sorted(FAMILIES)
    bases = [re.search(r"_base_ = '(\S+)'", s).group(1) for s in SNIPPETS]
    for kind, configs in KINDS.items():
        assert any(base in configs for base in bases), kind
    # every family appears in a detector's and a segmentor's snippet
    for scope in REGISTRIES:
        assert {re.search(r"type='(\w+ACmix)'", s).group(1) for s in SNIPPETS
                if s.startswith(f"_base_ = '{scope}::")} == set(FAMILIES)


@pytest.mark.parametrize('family', FAMILIES)
def test_channel_table(family):
    """The table's channels are those of every arch it names."""
    archs, out_indices, channels = TABLE[family]
    for arch in archs:
        backbone = DET_MODELS.build(
            dict(type=family, out_indices=out_indices, **arch))
        assert [backbone.num_features[i] for i in out_indices] == channels


@pytest.mark.parametrize('snippet', SNIPPETS, ids=snippet_id)
def test_page_snippet_trains_and_predicts(snippet, tmp_path):
    """Each snippet as written: its channels are the rule's for its
    backbone, and the model trains and predicts."""
    (tmp_path / 'snippet.py').write_text(snippet)
    cfg = Config.fromfile(tmp_path / 'snippet.py')
    scope = snippet.split("'")[1].split('::')[0]
    model = train_and_predict(copy.deepcopy(cfg.model), scope)
    channels = [model.backbone.num_features[i]
                for i in model.backbone.out_indices]
    fitted = copy.deepcopy(cfg.model)
    fit_channels(fitted, channels)
    assert fitted == cfg.model


@pytest.mark.parametrize('config, family', [
    pytest.param(config, family,
                 id=f'{kind}-{config.split("/")[-1][:-3]}-{family}')
    for kind, configs in KINDS.items()
    for config, family in zip(configs, FAMILIES)
])
def test_only_the_backbone_replaced(config, family):
    """mmdet's and mmseg's config with only the backbone replaced (a small
    arch, the table's ``out_indices``, the last ones where the neck takes
    fewer maps) and the channels fitted by the page's rule. mmseg's ResNet
    configs keep their segmentor-level ``pretrained``, which reaches the
    backbone as mmseg's ResNet takes it (the failure of issue 21)."""
    cfg = get_config(config)
    scope = config.split('::')[0]
    _, out_indices, _ = TABLE[family]
    if scope == 'mmdet':
        out_indices = out_indices[-len(cfg.model.neck.in_channels):]
    backbone = dict(type=family, out_indices=out_indices,
                    **SMALL_ARCHS[family])
    with DefaultScope.overwrite_default_scope(scope):
        features = REGISTRIES[scope].build(backbone).num_features
    cfg.model.backbone = backbone
    fit_channels(cfg.model, [features[i] for i in out_indices])

    pretrained = cfg.model.get('pretrained')
    if pretrained is None:
        model = train_and_predict(cfg.model, scope)
    else:
        with pytest.warns(UserWarning, match='pretrained is deprecated'):
            model = train_and_predict(cfg.model, scope)
        assert model.backbone.init_cfg == dict(
            type='Pretrained', checkpoint=pretrained)
