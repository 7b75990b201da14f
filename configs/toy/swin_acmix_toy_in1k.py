# Image classification with a small SwinACmix on the toy ImageNet data
# (tools/misc/make_toy_data.py): the stock ImageNet pipeline with data_root
# changed and 64x64 images.
_base_ = [
    'mmpretrain::_base_/datasets/imagenet_bs32.py',
    'mmpretrain::_base_/schedules/imagenet_bs256.py',
    'mmpretrain::_base_/default_runtime.py',
    './_base_/swin_acmix_toy.py',
]
custom_imports = dict(imports=['mmacmix'], allow_failed_imports=False)

data_root = 'data/toy/imagenet'
image_size = 64

model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='SwinACmix', arch={{_base_.toy_backbone.arch}},
        out_indices=(3, )),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(type='LinearClsHead', num_classes=3, in_channels=256,
              loss=dict(type='CrossEntropyLoss'), topk=(1, )))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=image_size),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=image_size, edge='short'),
    dict(type='CenterCrop', crop_size=image_size),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=8, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=8, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_evaluator = val_evaluator

optim_wrapper = dict(
    optimizer=dict(_delete_=True, type='AdamW', lr=1e-3, weight_decay=0.05))
param_scheduler = [dict(type='CosineAnnealingLR', by_epoch=True, T_max=3)]
train_cfg = dict(by_epoch=True, max_epochs=3, val_interval=3)
default_hooks = dict(logger=dict(interval=2),
                     checkpoint=dict(interval=1, max_keep_ckpts=2))
