# RetinaNet with a small SAN-ACmix (depth 10, 16-128 channels) on the toy
# COCO data (tools/misc/make_toy_data.py): the RetinaNet SAN-ACmix-19 config
# with a narrower backbone trained from scratch and the toy data.
_base_ = ['../retinanet_san_acmix_19_1x_coco.py', './_base_/toy_coco.py']
custom_imports = dict(imports=['mmacmix'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        depth=10, stem_channels=16, stage_channels=(32, 32, 64, 64, 128),
        frozen_stages=-1, norm_eval=False, init_cfg=None),
    neck=dict(in_channels=[32, 64, 64, 128], out_channels=32),
    bbox_head=dict(num_classes={{_base_.toy_num_classes}}, in_channels=32,
                   feat_channels=32, stacked_convs=2),
    # an untrained RetinaNet scores about its prior 0.01: keep those boxes
    test_cfg=dict(score_thr=0.001))

train_dataloader = {{_base_.toy_train_dataloader}}
val_dataloader = {{_base_.toy_val_dataloader}}
test_dataloader = val_dataloader
val_evaluator = {{_base_.toy_bbox_evaluator}}
test_evaluator = val_evaluator

train_cfg = dict(max_epochs=1, val_interval=1)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=4),
]
default_hooks = dict(logger=dict(interval=1),
                     checkpoint=dict(interval=1, max_keep_ckpts=1))
log_processor = dict(window_size=1)
