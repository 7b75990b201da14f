# SwinACmix-T on ImageNet-1k with Swin's recipe (mmpretrain's
# swin-tiny_16xb64_in1k): 300 epochs, AdamW lr 1e-3 at batch 1024 (16x64),
# weight decay 0.05, 20 linear warm-up epochs then cosine, RandAugment,
# Mixup 0.8, CutMix 1.0, RandomErasing, label smoothing 0.1, grad clip 5.
# 1-D parameters (norms, biases, the ACmix rates) get no weight decay.
_base_ = [
    './_base_/models/swin_acmix_t_cls.py',
    'mmpretrain::_base_/datasets/imagenet_bs64_swin_224.py',
    'mmpretrain::_base_/schedules/imagenet_bs1024_adamw_swin.py',
    'mmpretrain::_base_/default_runtime.py'
]
custom_imports = dict(imports=['mmacmix'], allow_failed_imports=False)

optim_wrapper = dict(clip_grad=dict(max_norm=5.0))
