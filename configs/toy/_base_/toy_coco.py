# The toy COCO data (tools/misc/make_toy_data.py) for detection configs:
# the stock COCO pipeline with data_root changed, 256x256 images and the
# three toy categories. The names are prefixed so that a config can list
# this file beside a real config (mmengine refuses a key defined by two
# bases) and take them over:
#   train_dataloader = {{_base_.toy_train_dataloader}}
#   val_dataloader = {{_base_.toy_val_dataloader}}
#   test_dataloader = val_dataloader
#   val_evaluator = {{_base_.toy_bbox_evaluator}}  # or toy_instance_evaluator
#   test_evaluator = val_evaluator
toy_data_root = 'data/toy/coco/'
toy_metainfo = dict(classes=('sports ball', 'kite', 'tv'))
toy_num_classes = 3
toy_image_scale = (256, 256)

_train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=toy_image_scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
_test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=toy_image_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                    'scale_factor')),
]
toy_train_dataloader = dict(
    batch_size=4, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=toy_data_root, metainfo=toy_metainfo,
                 pipeline=_train_pipeline))
toy_val_dataloader = dict(
    batch_size=4, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=toy_data_root, metainfo=toy_metainfo,
                 pipeline=_test_pipeline))
toy_bbox_evaluator = dict(
    type='CocoMetric', metric='bbox',
    ann_file=toy_data_root + 'annotations/instances_val2017.json')
toy_instance_evaluator = dict(toy_bbox_evaluator, metric=['bbox', 'segm'])
