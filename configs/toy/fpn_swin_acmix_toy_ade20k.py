# Semantic-FPN with a small SwinACmix on the toy ADE20K data (tools/misc/make_toy_data.py): the
# stock ADE20K pipeline with data_root changed and 128x128 crops.
_base_ = [
    'mmseg::_base_/models/fpn_r50.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_40k.py',
    './_base_/swin_acmix_toy.py',
]
custom_imports = dict(imports=['mmacmix'], allow_failed_imports=False)

data_root = 'data/toy/ade/ADEChallengeData2016'
crop_size = (128, 128)
image_scale = (320, 160)
norm_cfg = dict(type='BN', requires_grad=True)  # SyncBN needs GPUs

model = dict(
    data_preprocessor=dict(size=crop_size),
    pretrained=None,
    backbone={{_base_.toy_backbone}},
    neck=dict(in_channels={{_base_.toy_channels}}, out_channels=64),
    decode_head=dict(in_channels=[64, 64, 64, 64], channels=64,
                     num_classes=150, norm_cfg=norm_cfg))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=image_scale, ratio_range=(0.5, 2.0),
         keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_scale, keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(
    batch_size=4, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader

optim_wrapper = dict(
    optimizer=dict(_delete_=True, type='AdamW', lr=1e-3, weight_decay=0.01))
param_scheduler = [dict(type='PolyLR', power=1.0, eta_min=0.0, begin=0,
                        end=40, by_epoch=False)]
train_cfg = dict(max_iters=40, val_interval=40)
default_hooks = dict(logger=dict(interval=5),
                     checkpoint=dict(interval=20, max_keep_ckpts=2))
log_processor = dict(by_epoch=False, window_size=5)
