# PVTACmix-S on ImageNet-1k: the PVTACmix-T recipe.
_base_ = './pvt_acmix_t_in1k.py'
custom_imports = dict(imports=['mmacmix'], allow_failed_imports=False)

model = dict(backbone=dict(arch='small'))
