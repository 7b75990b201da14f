# UperNet, SwinACmix-T, 160k iterations on ADE20K with 512x512 crops:
# mmseg's Swin-T setup (AdamW lr 6e-5, weight decay 0.01, 1500-iteration
# linear warm-up then poly decay, batch 16 = 8x2, stochastic depth 0.3).
_base_ = [
    'mmseg::swin/'
    'swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py',
    './_base_/models/swin_acmix_t_dense.py'
]
custom_imports = dict(imports=['mmacmix'], allow_failed_imports=False)

model = dict(backbone={{_base_.swin_acmix_t_seg}})
auto_scale_lr = dict(enable=False, base_batch_size=16)
