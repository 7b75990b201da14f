"""The toy datasets are deterministic, in the real formats, and the stock
dataset classes read them through the real configs' pipelines."""
import hashlib
from pathlib import Path

import numpy as np
import pytest
from mmengine.config import Config
from mmengine.registry import init_default_scope
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from mmacmix.datasets import toy_data


def _digest(root):
    h = hashlib.sha256()
    for path in sorted(Path(root).rglob('*')):
        if path.is_file():
            h.update(str(path.relative_to(root)).encode())
            h.update(path.read_bytes())
    return h.hexdigest()


def test_generator_is_deterministic(tmp_path):
    a = toy_data.make_coco(tmp_path / 'a', num_train=4, num_val=2, seed=3)
    b = toy_data.make_coco(tmp_path / 'b', num_train=4, num_val=2, seed=3)
    c = toy_data.make_coco(tmp_path / 'c', num_train=4, num_val=2, seed=4)
    assert _digest(a) == _digest(b) != _digest(c)


def test_coco_format(toy_root):
    coco = COCO(str(toy_root / 'coco/annotations/instances_val2017.json'))
    assert sorted(coco.getCatIds()) == [37, 38, 62]
    assert [c['name'] for c in coco.loadCats([37, 38, 62])] == [
        'sports ball', 'kite', 'tv']
    for ann in coco.loadAnns(coco.getAnnIds()):
        img = coco.loadImgs(ann['image_id'])[0]
        assert (Path(toy_root / 'coco/val2017') / img['file_name']).is_file()
        # the polygon's own raster agrees with the annotated box and area
        rle = mask_utils.frPyObjects(ann['segmentation'], img['height'],
                                     img['width'])
        x, y, w, h = mask_utils.toBbox(mask_utils.merge(rle))
        assert np.allclose([x, y, w, h], ann['bbox'], atol=2)
        assert ann['area'] == pytest.approx(w * h, rel=0.6)


def test_ade20k_labels(toy_root):
    import cv2
    base = toy_root / 'ade/ADEChallengeData2016'
    labels = sorted((base / 'annotations/validation').glob('*.png'))
    images = sorted((base / 'images/validation').glob('*.jpg'))
    assert [p.stem for p in labels] == [p.stem for p in images]
    values = set()
    for path in labels:
        values |= set(np.unique(cv2.imread(str(path), cv2.IMREAD_UNCHANGED)))
    assert values <= {0, 1, 23, 28, 37} and {0, 1} <= values


def _stock_dataset(package, base_cfg, scope, split, data_root):
    """The dataset of a stock OpenMMLab data config with only data_root
    changed, built in that library's scope."""
    cfg = Config.fromfile(
        Path(__import__(package).__file__).parent / '.mim/configs' / base_cfg)
    init_default_scope(scope)
    from mmengine.registry import DATASETS
    return DATASETS.build({**cfg[f'{split}_dataloader'].dataset,
                           'data_root': data_root})


def test_stock_coco_pipeline_reads_toy_data(toy_root):
    dataset = _stock_dataset('mmdet', '_base_/datasets/coco_instance.py',
                             'mmdet', 'train', f'{toy_root}/coco/')
    sample = dataset[0]
    # the stock pipeline resizes to the 1333x800 COCO scale
    assert max(sample['inputs'].shape[1:]) == 800
    # mmdet numbers the categories present in the file, in its order
    assert dataset.cat_ids == [37, 38, 62]
    assert set(sample['data_samples'].gt_instances.labels.tolist()) <= {
        0, 1, 2}


def test_stock_ade20k_pipeline_reads_toy_data(toy_root):
    dataset = _stock_dataset('mmseg', '_base_/datasets/ade20k.py', 'mmseg',
                             'train', f'{toy_root}/ade/ADEChallengeData2016')
    sample = dataset[0]
    # RandomResize to 512 x [0.5, 2] of the square toy image, then a crop of
    # at most 512x512
    height, width = sample['inputs'].shape[1:]
    assert 256 <= height == width <= 512
    seg = sample['data_samples'].gt_sem_seg.data
    # reduce_zero_label: 0 -> 255 (ignored), class k -> k - 1
    assert set(seg.unique().tolist()) <= {255, 0, 22, 27, 36}


def test_stock_imagenet_pipeline_reads_toy_data(toy_root):
    dataset = _stock_dataset('mmpretrain', '_base_/datasets/imagenet_bs32.py',
                             'mmpretrain', 'val', f'{toy_root}/imagenet')
    labels = [dataset[i]['data_samples'].gt_label.item()
              for i in range(len(dataset))]
    assert sorted(set(labels)) == [0, 1, 2]
    assert tuple(dataset[0]['inputs'].shape[1:]) == (224, 224)
