# RetinaNet, PVTACmix-T, 1x (12 epochs, lr steps at 8 and 11) on COCO:
# mmdet's PVT setup (AdamW lr 1e-4, weight decay 1e-4, single scale 1333x800).
_base_ = [
    'mmdet::pvt/retinanet_pvt-t_fpn_1x_coco.py',
    './_base_/models/pvt_acmix_dense.py'
]
custom_imports = dict(imports=['mmacmix'], allow_failed_imports=False)

model = dict(backbone={{_base_.pvt_acmix_t}})
