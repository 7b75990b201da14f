# SAN-ACmix-19 ImageNet-1k classifier: the backbone (PyTorch's default
# initialisation as SAN's code, shift kernels in the ACmix convolution
# paths), global average pooling, a 1000-class fc and cross-entropy with
# label smoothing 0.1 (SAN's recipe). Change `depth` for 10 / 15.
model = dict(
    type='ImageClassifier',
    backbone=dict(type='SANACmix', depth=19, out_indices=(4, )),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=2048,
        loss=dict(
            type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        topk=(1, 5)))
