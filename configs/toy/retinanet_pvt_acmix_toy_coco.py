# RetinaNet with a small PVTACmix on the toy COCO data
# (tools/misc/make_toy_data.py): the PVT-ACmix-T RetinaNet config with a
# narrower backbone trained from scratch and the toy data.
_base_ = ['../retinanet_pvt_acmix_t_1x_coco.py', './_base_/toy_coco.py']
custom_imports = dict(imports=['mmacmix'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        arch=dict(
            _delete_=True,
            embed_dims=[16, 32, 40, 64],
            depths=[1, 1, 1, 1],
            num_heads=[1, 2, 5, 8],
            sr_ratios=[8, 4, 2, 1],
            mlp_ratios=[2, 2, 2, 2]),
        init_cfg=None),
    neck=dict(in_channels=[16, 32, 40, 64], out_channels=32),
    bbox_head=dict(num_classes={{_base_.toy_num_classes}}, in_channels=32,
                   feat_channels=32),
    # an untrained RetinaNet scores about its prior 0.01: keep those boxes
    test_cfg=dict(score_thr=0.001))

train_dataloader = {{_base_.toy_train_dataloader}}
val_dataloader = {{_base_.toy_val_dataloader}}
test_dataloader = val_dataloader
val_evaluator = {{_base_.toy_bbox_evaluator}}
test_evaluator = val_evaluator

train_cfg = dict(max_epochs=1, val_interval=1)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=4),
]
optim_wrapper = dict(optimizer=dict(lr=1e-3))
default_hooks = dict(logger=dict(interval=1),
                     checkpoint=dict(interval=1, max_keep_ckpts=1))
log_processor = dict(window_size=1)
