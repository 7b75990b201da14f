# SwinACmix-T ImageNet-1k classifier, initialised as the official
# Swin-ACmix: the backbone initialises itself (Swin's truncated-normal
# Linear/LayerNorm init, PyTorch-default `fc` and shift kernels in the ACmix
# convolution paths), so the classifier-level init_cfg of mmpretrain's Swin
# configs is not used.
model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='SwinACmix', arch='tiny', drop_path_rate=0.2, out_indices=(3, )),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=768,
        init_cfg=dict(type='TruncNormal', layer='Linear', std=0.02, bias=0.),
        loss=dict(
            type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        cal_acc=False),
    train_cfg=dict(augments=[
        dict(type='Mixup', alpha=0.8),
        dict(type='CutMix', alpha=1.0)
    ]),
)
