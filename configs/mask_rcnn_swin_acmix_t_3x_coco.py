# Mask R-CNN, SwinACmix-T, 3x (36 epochs) on COCO: mmdet's Swin-T setup
# (AdamW lr 1e-4, weight decay 0.05, multi-scale 480-800 with random crop).
_base_ = [
    'mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_ms-crop-3x_coco.py',
    './_base_/models/swin_acmix_t_dense.py'
]
custom_imports = dict(imports=['mmacmix'], allow_failed_imports=False)

model = dict(backbone={{_base_.swin_acmix_t}})

# Appendix B's 500-iteration warm-up
param_scheduler = [
    {{_base_.swin_det_warmup}},
    dict(type='MultiStepLR', by_epoch=True, begin=0, end=36,
         milestones=[27, 33], gamma=0.1)
]
