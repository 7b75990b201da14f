# PVTACmix-S on ImageNet-1k: the PVTACmix-T recipe.
_base_ = './pvt_acmix_t_in1k.py'

model = dict(backbone=dict(arch='small'))
