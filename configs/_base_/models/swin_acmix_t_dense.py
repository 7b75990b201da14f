# SwinACmix-T as the backbone of a detector or segmentor: four NCHW maps
# (strides 4-32, 96-768 channels), initialised from the ImageNet-1k
# classifier converted by tools/model_converters/acmix_official.py into
# checkpoints/swin_acmix_t_in1k.pth. Use as `backbone={{_base_.swin_acmix_t}}`;
# `_delete_` drops the settings of the Swin backbone it replaces.
swin_acmix_t = dict(
    _delete_=True,
    type='SwinACmix',
    arch='tiny',
    drop_path_rate=0.2,  # Swin-T in detection
    out_indices=(0, 1, 2, 3),
    init_cfg=dict(
        type='Pretrained',
        checkpoint='checkpoints/swin_acmix_t_in1k.pth',
        prefix='backbone.'))
# Swin-T in UperNet segmentation uses more stochastic depth
swin_acmix_t_seg = dict(swin_acmix_t, drop_path_rate=0.3)
# Appendix B: a linear warm-up over the first 500 iterations for COCO (mmdet
# 3.x's Swin configs use 1000): `param_scheduler = [{{_base_.swin_det_warmup}},
# ...]`
swin_det_warmup = dict(
    type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500)
