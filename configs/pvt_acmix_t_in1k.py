# PVTACmix-T on ImageNet-1k with PVT's (DeiT's) recipe: 300 epochs, AdamW
# lr 1e-3 at batch 1024 (8x128), weight decay 0.05, 5 linear warm-up epochs
# then cosine to 1e-5, RandAugment, Mixup 0.8, CutMix 1.0, RandomErasing 0.25,
# label smoothing 0.1, stochastic depth 0.1, repeated augmentation (3
# repeats, on by default in whai362/PVT's main.py). Norms, biases, the ACmix
# rates and the position embeddings get no weight decay.
_base_ = [
    './_base_/models/pvt_acmix_t_cls.py',
    'mmpretrain::_base_/datasets/imagenet_bs64_swin_224.py',
    'mmpretrain::_base_/schedules/imagenet_bs1024_adamw_swin.py',
    'mmpretrain::_base_/default_runtime.py'
]
custom_imports = dict(imports=['mmacmix'], allow_failed_imports=False)

train_dataloader = dict(
    batch_size=128, sampler=dict(type='RepeatAugSampler', shuffle=True))
val_dataloader = dict(batch_size=128)
test_dataloader = val_dataloader

optim_wrapper = dict(
    paramwise_cfg=dict(
        _delete_=True,
        norm_decay_mult=0.0,
        bias_decay_mult=0.0,
        flat_decay_mult=0.0,
        custom_keys={'.pos_embed': dict(decay_mult=0.0)}))
warmup_epochs = 5
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1e-3,
        by_epoch=True,
        end=warmup_epochs,
        convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        eta_min=1e-5,
        by_epoch=True,
        begin=warmup_epochs)
]
