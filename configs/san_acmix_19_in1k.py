# SAN-ACmix-19 on ImageNet-1k with SAN's recipe: 100 epochs, SGD (momentum
# 0.9, weight decay 1e-4) at batch 256 (8x32), lr 0.1 with cosine decay,
# label smoothing 0.1, standard augmentation at 224x224 (random resized
# crop and flip; resize to 256 and center crop for testing).
_base_ = [
    './_base_/models/san_acmix_19_cls.py',
    'mmpretrain::_base_/datasets/imagenet_bs32.py',
    'mmpretrain::_base_/schedules/imagenet_bs256_coslr.py',
    'mmpretrain::_base_/default_runtime.py'
]
custom_imports = dict(imports=['mmacmix'], allow_failed_imports=False)
