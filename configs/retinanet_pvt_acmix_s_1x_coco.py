# RetinaNet, PVTACmix-S, 1x on COCO: the PVTACmix-T setup (mmdet's PVT).
_base_ = './retinanet_pvt_acmix_t_1x_coco.py'
custom_imports = dict(imports=['mmacmix'], allow_failed_imports=False)

model = dict(backbone={{_base_.pvt_acmix_s}})
