# RetinaNet with ResNet-ACmix-50 and FPN, 1x (12 epochs) on COCO: mmdet's
# RetinaNet R-50 setup (SGD lr 0.01, momentum 0.9, weight decay 1e-4, linear
# warm-up over 500 iterations, lr steps at epochs 8 and 11, 1333x800). The
# backbone starts from the ImageNet-1k classifier converted by
# tools/model_converters/acmix_official.py into
# checkpoints/resnet_acmix_50_in1k.pth; as in mmdet's R-50, the stem and
# first stage are frozen and the norms stay in eval mode.
_base_ = 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['mmacmix'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='ResNetACmix',
        depth=50,
        out_indices=(0, 1, 2, 3),
        frozen_stages=1,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=True,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='checkpoints/resnet_acmix_50_in1k.pth',
            prefix='backbone.')))
optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=0.0001))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0,
         end=500),
    dict(type='MultiStepLR', begin=0, end=12, by_epoch=True,
         milestones=[8, 11], gamma=0.1)
]
train_cfg = dict(max_epochs=12)
