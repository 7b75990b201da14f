# DeepLabV3+, ResNet-ACmix-50 dilated to output stride 8, 80k iterations on
# ADE20K with 512x512 crops: mmseg's DeepLabV3+ R-50-D8 setup (SGD lr 0.01,
# momentum 0.9, weight decay 5e-4, poly decay, batch 16 = 4x4, auxiliary FCN
# head on stage 3) with only the backbone replaced. No paper entry.
_base_ = [
    'mmseg::deeplabv3plus/deeplabv3plus_r50-d8_4xb4-80k_ade20k-512x512.py',
    './_base_/models/resnet_acmix_50_d8.py'
]
custom_imports = dict(imports=['mmacmix'], allow_failed_imports=False)

model = dict(pretrained=None, backbone={{_base_.resnet_acmix_50_d8}})
auto_scale_lr = dict(enable=False, base_batch_size=16)
