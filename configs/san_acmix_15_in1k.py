# SAN-ACmix-15 on ImageNet-1k with SAN's recipe of san_acmix_19_in1k.py
# (100 epochs, SGD lr 0.1 at batch 256, cosine, label smoothing 0.1).
_base_ = './san_acmix_19_in1k.py'
custom_imports = dict(imports=['mmacmix'], allow_failed_imports=False)

model = dict(backbone=dict(depth=15))
