# Semantic-FPN, PVTACmix-S, 40k iterations on ADE20K with 512x512 crops: the
# PVTACmix-T setup.
_base_ = './fpn_pvt_acmix_t_40k_ade20k.py'
custom_imports = dict(imports=['mmacmix'], allow_failed_imports=False)

model = dict(backbone={{_base_.pvt_acmix_s}})
