# Mask R-CNN with a small SwinACmix on the toy COCO data
# (tools/misc/make_toy_data.py); the main job's default.
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    'mmdet::_base_/datasets/coco_instance.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
    './_base_/swin_acmix_toy.py',
    './_base_/toy_coco.py',
]
custom_imports = dict(imports=['mmacmix'], allow_failed_imports=False)

model = dict(
    backbone={{_base_.toy_backbone}},
    neck=dict(in_channels={{_base_.toy_channels}}, out_channels=64),
    rpn_head=dict(in_channels=64, feat_channels=64),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=64),
        bbox_head=dict(in_channels=64, fc_out_channels=256,
                       num_classes={{_base_.toy_num_classes}}),
        mask_roi_extractor=dict(out_channels=64),
        mask_head=dict(in_channels=64, conv_out_channels=64,
                       num_classes={{_base_.toy_num_classes}})))

train_dataloader = {{_base_.toy_train_dataloader}}
val_dataloader = {{_base_.toy_val_dataloader}}
test_dataloader = val_dataloader
val_evaluator = {{_base_.toy_instance_evaluator}}
test_evaluator = val_evaluator

# 8 epochs of 64 images, cosine decay: bbox mAP ~0.6 in ~4 min on 2 cores
train_cfg = dict(max_epochs=8, val_interval=8)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=20),
    dict(type='CosineAnnealingLR', T_max=8, eta_min=1e-5, by_epoch=True,
         begin=0, end=8),
]
optim_wrapper = dict(
    optimizer=dict(_delete_=True, type='AdamW', lr=1e-3, weight_decay=0.05))
default_hooks = dict(logger=dict(interval=5),
                     checkpoint=dict(interval=1, max_keep_ckpts=2))
log_processor = dict(window_size=5)
# a fixed seed: the demo's mAP is reproducible (change it with --cfg-options)
randomness = dict(seed=0)
