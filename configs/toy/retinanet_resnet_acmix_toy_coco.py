# RetinaNet with a small ResNet-ACmix (depth 26, 8-64 channel ACmix widths)
# on the toy COCO data (tools/misc/make_toy_data.py): the RetinaNet
# ResNet-ACmix-50 config with data_root changed, 256x256 images, 3 classes,
# trained from scratch.
_base_ = '../retinanet_resnet_acmix_50_1x_coco.py'
custom_imports = dict(
    imports=['mmacmix', 'mmacmix.models.backbones.resnet_acmix'],
    allow_failed_imports=False)

data_root = 'data/toy/coco/'
metainfo = dict(classes=('sports ball', 'kite', 'tv'))
image_scale = (256, 256)

model = dict(
    backbone=dict(
        depth=26, stem_channels=16, base_channels=8, frozen_stages=-1,
        norm_eval=False, init_cfg=None),
    neck=dict(in_channels=[32, 64, 128, 256], out_channels=32),
    bbox_head=dict(num_classes=3, in_channels=32, feat_channels=32,
                   stacked_convs=2),
    # an untrained head scores about its prior (0.01): keep its boxes so
    # that the evaluation has detections to score
    test_cfg=dict(score_thr=0.0, max_per_img=20))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=image_scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                    'scale_factor')),
]
train_dataloader = dict(
    batch_size=4, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, metainfo=metainfo,
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=4, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, metainfo=metainfo,
                 pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator

train_cfg = dict(max_epochs=1, val_interval=1)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=4),
]
default_hooks = dict(logger=dict(interval=1),
                     checkpoint=dict(interval=1, max_keep_ckpts=1))
log_processor = dict(window_size=1)
