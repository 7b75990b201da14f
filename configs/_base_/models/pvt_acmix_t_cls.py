# PVTACmix-T ImageNet-1k classifier: the last stage with PVT's final
# LayerNorm (`out_norms`), global average pooling (the convolution path has
# no class token) and a linear head. The backbone initialises itself as PVT
# (truncated-normal Linear and position embeddings) with the ACmix
# convolution paths at their shift init.
model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='PVTACmix',
        arch='tiny',
        drop_path_rate=0.1,
        out_indices=(3, ),
        out_norms=True),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=512,
        init_cfg=dict(type='TruncNormal', layer='Linear', std=0.02, bias=0.),
        loss=dict(
            type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        cal_acc=False),
    train_cfg=dict(augments=[
        dict(type='Mixup', alpha=0.8),
        dict(type='CutMix', alpha=1.0)
    ]),
)
