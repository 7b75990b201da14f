# Mask R-CNN, SwinACmix-T, 1x (12 epochs) on COCO: mmdet's Swin-T setup
# (AdamW lr 1e-4, weight decay 0.05, single scale 1333x800).
_base_ = [
    'mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py',
    './_base_/models/swin_acmix_t_dense.py'
]
custom_imports = dict(imports=['mmacmix'], allow_failed_imports=False)

model = dict(backbone={{_base_.swin_acmix_t}})

# Appendix B's 500-iteration warm-up
param_scheduler = [
    {{_base_.swin_det_warmup}},
    dict(type='MultiStepLR', by_epoch=True, begin=0, end=12,
         milestones=[8, 11], gamma=0.1)
]
