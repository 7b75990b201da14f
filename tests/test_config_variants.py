"""Each model type of the real configs trains one iteration and evaluates
through tools/train.py and tools/test.py: the real config with the toy data
(and its small image sizes) in place of COCO/ADE20K/ImageNet, no pretrained
file, and one or two images per split."""
import pytest
from mmengine.config import Config

from helpers import REPO_ROOT, printed_metrics, run_tool

TOY_DATA = {  # the data settings of the toy config of each library
    'mmdet': 'configs/toy/mask_rcnn_swin_acmix_toy_coco.py',
    'mmseg': 'configs/toy/fpn_swin_acmix_toy_ade20k.py',
    'mmpretrain': 'configs/toy/swin_acmix_toy_in1k.py',
}
DATA_KEYS = ('train_dataloader', 'val_dataloader', 'test_dataloader',
             'val_evaluator', 'test_evaluator')
EXPECTED_METRIC = {'mmdet': 'coco/bbox_mAP', 'mmseg': 'mIoU',
                   'mmpretrain': 'accuracy/top1'}


def toy_variant(config, path):
    """Write the one-iteration toy variant of ``config`` to ``path``."""
    cfg = Config.fromfile(REPO_ROOT / config)
    scope = cfg.default_scope
    toy = Config.fromfile(REPO_ROOT / TOY_DATA[scope])
    for key in DATA_KEYS:
        cfg[key] = toy[key]
    cfg.train_dataloader.batch_size = 2
    cfg.train_dataloader.dataset.indices = 2
    cfg.val_dataloader.dataset.indices = 2
    cfg.test_dataloader = cfg.val_dataloader
    cfg.model.backbone.init_cfg = None
    # the schedules' later phases (e.g. cosine after warm-up) start after
    # the single iteration
    cfg.param_scheduler = [
        s for s in cfg.param_scheduler if s.get('begin', 0) == 0]
    if scope == 'mmseg':
        cfg.model.data_preprocessor.size = toy.model.data_preprocessor.size
        cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=1,
                             val_interval=1)
        cfg.default_hooks.checkpoint.interval = 1
    else:
        cfg.train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=1,
                             val_interval=1)
    if scope == 'mmdet':
        # mmdet's COCO evaluation needs one class per category in the file
        _set_num_classes(cfg.model, toy.toy_num_classes)
    cfg.dump(path)
    return scope


def _set_num_classes(node, num_classes):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == 'num_classes':
                node[key] = num_classes
            else:
                _set_num_classes(value, num_classes)
    elif isinstance(node, (list, tuple)):
        for value in node:
            _set_num_classes(value, num_classes)


@pytest.mark.parametrize('config', [
    'configs/cascade_mask_rcnn_swin_acmix_t_3x_coco.py',
    'configs/upernet_swin_acmix_t_160k_ade20k.py',
    'configs/fpn_pvt_acmix_t_40k_ade20k.py',
    'configs/deeplabv3plus_resnet_acmix_50_80k_ade20k.py',
    'configs/swin_acmix_t_in1k.py',
])
def test_one_iteration_and_eval(config, toy_workspace, tmp_path):
    variant = tmp_path / 'variant.py'
    scope = toy_variant(config, variant)
    work_dir = tmp_path / 'work_dir'
    run_tool(['train.py', variant, '--work-dir', work_dir], cwd=toy_workspace)
    checkpoint = (work_dir / 'last_checkpoint').read_text().strip()
    proc = run_tool(['test.py', variant, checkpoint, '--work-dir', work_dir],
                    cwd=toy_workspace)
    assert EXPECTED_METRIC[scope] in printed_metrics(proc)
