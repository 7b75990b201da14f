# ResNet-ACmix-50 dilated to output stride 8, as mmseg's ResNetV1c in its
# DeepLab and PSPNet configs (`-d8`): strides (1, 2, 1, 1), dilations
# (1, 1, 2, 4) with the first block of a dilated stage at half the dilation;
# both paths of the ACmix operators of stages 3-4 are dilated. Four NCHW maps
# (256-2048 channels, strides 4, 8, 8, 8), initialised from the ImageNet-1k
# classifier converted into checkpoints/resnet_acmix_50_in1k.pth. Use as
# `backbone={{_base_.resnet_acmix_50_d8}}` with `pretrained=None` on the
# model (mmseg's R-50 configs name ResNetV1c's weights there).
resnet_acmix_50_d8 = dict(
    _delete_=True,
    type='ResNetACmix',
    depth=50,
    strides=(1, 2, 1, 1),
    dilations=(1, 1, 2, 4),
    contract_dilation=True,
    out_indices=(0, 1, 2, 3),
    norm_cfg=dict(type='SyncBN', requires_grad=True),
    norm_eval=False,
    init_cfg=dict(
        type='Pretrained',
        checkpoint='checkpoints/resnet_acmix_50_in1k.pth',
        prefix='backbone.'))
