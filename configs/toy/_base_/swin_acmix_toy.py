# A small SwinACmix for CPU runs on the toy data: 4 stages of 32-256
# channels, window 7, trained from scratch. Use as
# `backbone={{_base_.toy_backbone}}`; `_delete_` drops the settings of the
# stock backbone it replaces.
toy_backbone = dict(
    _delete_=True,
    type='SwinACmix',
    arch=dict(embed_dims=32, depths=[1, 1, 2, 1], num_heads=[1, 2, 4, 8]),
    drop_path_rate=0.1,
    out_indices=(0, 1, 2, 3))
toy_channels = [32, 64, 128, 256]
