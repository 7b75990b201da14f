# ResNet-ACmix-50 on ImageNet-1k with the official recipe: 100 epochs, SGD
# (momentum 0.9, weight decay 1e-4) at batch 256 (8x32), lr 0.1 with cosine
# decay, label smoothing 0.1, standard ResNet augmentation at 224x224.
_base_ = [
    './_base_/models/resnet_acmix_50_cls.py',
    'mmpretrain::_base_/datasets/imagenet_bs32.py',
    'mmpretrain::_base_/schedules/imagenet_bs256_coslr.py',
    'mmpretrain::_base_/default_runtime.py'
]
custom_imports = dict(imports=['mmacmix'], allow_failed_imports=False)
