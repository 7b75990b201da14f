# PVTACmix-T/S/M/L as the backbone of a detector or segmentor: four NCHW maps
# (strides 4-32, 64-128-320-512 channels), initialised from an ImageNet-1k
# classifier in checkpoints/pvt_acmix_{t,s,m,l}_in1k.pth: ours
# (configs/pvt_acmix_{t,s}_in1k.py) or, until then, whai362's PVT v1
# (pvt_tiny.pth, ...) converted by tools/model_converters/acmix_official.py,
# which starts the convolution paths at their shift init with rates (1, 0).
# Use as `backbone={{_base_.pvt_acmix_t}}`; `_delete_` drops the settings of
# the PVT backbone it replaces.
pvt_acmix_t = dict(
    _delete_=True,
    type='PVTACmix',
    arch='tiny',
    drop_path_rate=0.1,  # mmdet's PVT
    out_indices=(0, 1, 2, 3),
    init_cfg=dict(
        type='Pretrained',
        checkpoint='checkpoints/pvt_acmix_t_in1k.pth',
        prefix='backbone.'))
pvt_acmix_s = dict(
    pvt_acmix_t,
    arch='small',
    init_cfg=dict(
        pvt_acmix_t['init_cfg'],
        checkpoint='checkpoints/pvt_acmix_s_in1k.pth'))
pvt_acmix_m = dict(
    pvt_acmix_t,
    arch='medium',
    init_cfg=dict(
        pvt_acmix_t['init_cfg'],
        checkpoint='checkpoints/pvt_acmix_m_in1k.pth'))
pvt_acmix_l = dict(
    pvt_acmix_t,
    arch='large',
    init_cfg=dict(
        pvt_acmix_t['init_cfg'],
        checkpoint='checkpoints/pvt_acmix_l_in1k.pth'))
