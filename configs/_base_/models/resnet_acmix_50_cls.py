# ResNet-ACmix-50 ImageNet-1k classifier as the official one: the backbone
# initialises itself (Kaiming fan-out convolutions, unit norms, shift kernels
# in the ACmix convolution paths), global average pooling, a 1000-class fc
# and cross-entropy with label smoothing 0.1. Change `depth` for 26 / 38.
model = dict(
    type='ImageClassifier',
    backbone=dict(type='ResNetACmix', depth=50, out_indices=(3, )),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=2048,
        loss=dict(
            type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        topk=(1, 5)))
