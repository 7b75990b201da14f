# RetinaNet with a small PVTACmix on the toy COCO data
# (tools/misc/make_toy_data.py): the PVT-ACmix-T RetinaNet config with a
# narrower backbone trained from scratch, data_root changed, 256x256 images
# and 3 classes.
_base_ = '../retinanet_pvt_acmix_t_1x_coco.py'

data_root = 'data/toy/coco/'
metainfo = dict(classes=('sports ball', 'kite', 'tv'))
image_scale = (256, 256)

model = dict(
    backbone=dict(
        arch=dict(
            _delete_=True,
            embed_dims=[16, 32, 40, 64],
            depths=[1, 1, 1, 1],
            num_heads=[1, 2, 5, 8],
            sr_ratios=[8, 4, 2, 1],
            mlp_ratios=[2, 2, 2, 2]),
        init_cfg=None),
    neck=dict(in_channels=[16, 32, 40, 64], out_channels=32),
    bbox_head=dict(num_classes=3, in_channels=32, feat_channels=32),
    # an untrained RetinaNet scores about its prior 0.01: keep those boxes
    test_cfg=dict(score_thr=0.001))

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
optim_wrapper = dict(optimizer=dict(lr=1e-3))
default_hooks = dict(logger=dict(interval=1),
                     checkpoint=dict(interval=1, max_keep_ckpts=1))
log_processor = dict(window_size=1)
