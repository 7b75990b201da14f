# UperNet, SwinACmix-S, 160k iterations on ADE20K: the tiny setup with the
# small backbone (as mmseg's Swin-S).
_base_ = ['./upernet_swin_acmix_t_160k_ade20k.py']
custom_imports = dict(imports=['mmacmix'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        arch='small',
        init_cfg=dict(checkpoint='checkpoints/swin_acmix_s_in1k.pth')))
