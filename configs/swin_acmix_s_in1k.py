# SwinACmix-S on ImageNet-1k: the tiny recipe with stochastic depth 0.3
# (as mmpretrain's swin-small_16xb64_in1k).
_base_ = ['./swin_acmix_t_in1k.py']
custom_imports = dict(imports=['mmacmix'], allow_failed_imports=False)

model = dict(backbone=dict(arch='small', drop_path_rate=0.3))
