# ResNet-ACmix-38 on ImageNet-1k with the official recipe of
# resnet_acmix_50_in1k.py (100 epochs, SGD lr 0.1 at batch 256, cosine,
# label smoothing 0.1).
_base_ = './resnet_acmix_50_in1k.py'
custom_imports = dict(imports=['mmacmix'], allow_failed_imports=False)

model = dict(backbone=dict(depth=38))
