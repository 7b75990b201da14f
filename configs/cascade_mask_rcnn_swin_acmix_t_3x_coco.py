# Cascade Mask R-CNN, SwinACmix-T, 3x (36 epochs) on COCO, as in the Swin
# paper: 4conv1fc bbox heads with SyncBN and GIoU loss, multi-scale 480-800
# with random crop (taken from mmdet's ConvNeXt-T cascade config), AdamW
# lr 1e-4, weight decay 0.05 and Swin's no-decay keys.
_base_ = [
    'mmdet::convnext/'
    'cascade-mask-rcnn_convnext-t-p4-w7_fpn_4conv1fc-giou_amp-ms-crop-3x_coco.py',
    './_base_/models/swin_acmix_t_dense.py'
]
custom_imports = dict(imports=['mmacmix'], allow_failed_imports=False)

model = dict(backbone={{_base_.swin_acmix_t}})

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    paramwise_cfg=dict(
        custom_keys={
            'absolute_pos_embed': dict(decay_mult=0.),
            'relative_position_bias_table': dict(decay_mult=0.),
            'norm': dict(decay_mult=0.)
        }),
    optimizer=dict(
        type='AdamW', lr=0.0001, betas=(0.9, 0.999), weight_decay=0.05))

# Appendix B's 500-iteration warm-up
param_scheduler = [
    {{_base_.swin_det_warmup}},
    dict(type='MultiStepLR', by_epoch=True, begin=0, end=36,
         milestones=[27, 33], gamma=0.1)
]
