# RetinaNet R-50 with ACmixConv2d as the 3x3 convolution of stages 3-4
# (mmdet's ResNet builds it through its DCN slot): a BoTNet-like hybrid
_base_ = 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['mmacmix'], allow_failed_imports=False)
model = dict(
    backbone=dict(
        dcn=dict(type='ACmixConv2d'),
        stage_with_dcn=(False, False, True, True)))
