# RetinaNet with SAN-ACmix-19 and FPN, 1x (12 epochs) on COCO, with the
# schedule of retinanet_resnet_acmix_50_1x_coco.py: mmdet's RetinaNet R-50
# setup (SGD lr 0.01, momentum 0.9, weight decay 1e-4, linear warm-up over
# 500 iterations, lr steps at epochs 8 and 11, 1333x800). The
# FPN takes the stages of strides 4 to 32 (256 to 2048 channels, as R-50's).
# The backbone starts from the ImageNet-1k classifier of
# san_acmix_19_in1k.py saved as checkpoints/san_acmix_19_in1k.pth; as in
# mmdet's R-50, everything down to the first stride-4 stage is frozen (the
# stem and stages 0 and 1) and the norms stay in eval mode.
_base_ = './retinanet_resnet_acmix_50_1x_coco.py'
custom_imports = dict(imports=['mmacmix'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='SANACmix',
        depth=19,
        out_indices=(1, 2, 3, 4),
        frozen_stages=2,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=True,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='checkpoints/san_acmix_19_in1k.pth',
            prefix='backbone.')))
