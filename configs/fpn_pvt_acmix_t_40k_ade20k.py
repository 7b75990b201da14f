# Semantic-FPN, PVTACmix-T, 40k iterations on ADE20K with 512x512 crops:
# PVT's setup (whai362/PVT fpn_pvt_*_ade20k_40k.py: AdamW lr 2e-4, weight
# decay 1e-4, poly decay with power 0.9, batch 32 = 8x4), i.e. Appendix B's
# "lr 1e-4 for 80k iterations" at batch 16 scaled to 8 GPUs, and Table 2's
# "40k", on mmseg's Semantic-FPN ADE20K pipeline.
_base_ = [
    'mmseg::sem_fpn/fpn_r50_4xb4-160k_ade20k-512x512.py',
    './_base_/models/pvt_acmix_dense.py'
]
custom_imports = dict(imports=['mmacmix'], allow_failed_imports=False)

model = dict(
    pretrained=None,
    backbone={{_base_.pvt_acmix_t}},
    neck=dict(in_channels=[64, 128, 320, 512]))

optim_wrapper = dict(
    optimizer=dict(_delete_=True, type='AdamW', lr=2e-4, weight_decay=1e-4))
train_dataloader = dict(batch_size=4)
auto_scale_lr = dict(enable=False, base_batch_size=32)
max_iters = 40000
param_scheduler = [
    dict(
        type='PolyLR',
        power=0.9,
        eta_min=0.0,
        begin=0,
        end=max_iters,
        by_epoch=False)
]
train_cfg = dict(max_iters=max_iters, val_interval=4000)
default_hooks = dict(checkpoint=dict(interval=4000))
