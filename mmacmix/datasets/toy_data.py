"""Deterministic toy datasets in the exact on-disk formats of COCO, ADE20K
and ImageNet, so the real configs' pipelines apply by changing ``data_root``.

Every image shows a few filled shapes (disc, square, triangle) on a textured
background. The shapes carry real category ids and names of each dataset, so
the stock dataset classes and metrics read them unchanged:

* COCO (``instances_{train,val}2017.json``, ``{train,val}2017/*.jpg``):
  boxes and polygon masks; disc = 'sports ball' (37), triangle = 'kite' (38),
  square = 'tv' (62).
* ADE20K (``ADEChallengeData2016/{images,annotations}/{training,validation}``):
  PNG label maps, 0 = unlabelled (ignored with ``reduce_zero_label``),
  background 'wall' (1), disc 'lamp' (37), triangle 'mirror' (28), square
  'painting' (23), indices as in ADE20K's 150 classes.
* ImageNet (``train/<wnid>/*.JPEG``, ``val/*.JPEG``, ``meta/{train,val}.txt``):
  one large shape per image, labels 0..2.
"""
import json
import math
from pathlib import Path

import cv2
import numpy as np

SHAPES = ('disc', 'triangle', 'square')
COCO_CATEGORIES = {  # shape -> (COCO id, COCO name)
    'disc': (37, 'sports ball'),
    'triangle': (38, 'kite'),
    'square': (62, 'tv'),
}
COCO_CLASSES = tuple(COCO_CATEGORIES[s][1] for s in SHAPES)
ADE_BACKGROUND = 1  # 'wall'
ADE_LABELS = {'disc': 37, 'triangle': 28, 'square': 23}
IMAGENET_WNIDS = ('n01440764', 'n01443537', 'n01484850')  # label 0, 1, 2


def _background(rng, height, width):
    """A smooth colour gradient plus noise, so shapes are not the only
    texture in the image."""
    corners = rng.integers(0, 160, size=(2, 2, 3)).astype(np.float32)
    image = cv2.resize(corners, (width, height),
                       interpolation=cv2.INTER_LINEAR)
    image += rng.normal(0, 8, size=image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def _polygon(rng, shape, cx, cy, size):
    """Vertices (N, 2) of a shape centred at (cx, cy) with extent ``size``."""
    if shape == 'disc':
        angles = np.linspace(0, 2 * math.pi, 24, endpoint=False)
        radius = size / 2
    elif shape == 'square':
        angles = np.arange(4) * math.pi / 2 + math.pi / 4
        radius = size / math.sqrt(2)
    else:
        angles = np.arange(3) * 2 * math.pi / 3 - math.pi / 2
        radius = size / 2
    angles = angles + (rng.uniform(-0.3, 0.3) if shape == 'triangle' else 0)
    points = np.stack([cx + radius * np.cos(angles),
                       cy + radius * np.sin(angles)], axis=1)
    return np.round(points).astype(np.int32)


def _scene(rng, height, width, num_shapes, min_size, max_size):
    """An image and its shapes as (shape, polygon), drawn in order so later
    shapes occlude earlier ones. Shapes overlap little by construction."""
    image = _background(rng, height, width)
    shapes, boxes = [], []
    for _ in range(20 * num_shapes):
        if len(shapes) == num_shapes:
            break
        size = int(rng.integers(min_size, max_size + 1))
        cx = int(rng.integers(size // 2 + 1, width - size // 2 - 1))
        cy = int(rng.integers(size // 2 + 1, height - size // 2 - 1))
        box = (cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2)
        if any(_iou(box, other) > 0.1 for other in boxes):
            continue
        shape = SHAPES[int(rng.integers(len(SHAPES)))]
        polygon = _polygon(rng, shape, cx, cy, size)
        colour = tuple(int(c) for c in rng.integers(90, 256, size=3))
        cv2.fillPoly(image, [polygon], colour)
        shapes.append((shape, polygon))
        boxes.append(box)
    return image, shapes


def _iou(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) -
             inter)
    return inter / union


def make_coco(root, num_train=64, num_val=16, size=(256, 256), seed=0):
    """Write a COCO-2017-layout instance dataset under ``root``."""
    root = Path(root)
    (root / 'annotations').mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    categories = [dict(id=cid, name=name, supercategory='toy')
                  for cid, name in sorted(COCO_CATEGORIES.values())]
    for split, count in (('train2017', num_train), ('val2017', num_val)):
        (root / split).mkdir(exist_ok=True)
        images, annotations = [], []
        for index in range(count):
            image_id = index + 1
            image, shapes = _scene(rng, size[0], size[1],
                                   int(rng.integers(1, 5)), 32, 96)
            file_name = f'{image_id:012d}.jpg'
            cv2.imwrite(str(root / split / file_name), image,
                        [cv2.IMWRITE_JPEG_QUALITY, 95])
            images.append(dict(id=image_id, file_name=file_name,
                               height=size[0], width=size[1]))
            for shape, polygon in shapes:
                (x, y), (x1, y1) = polygon.min(0), polygon.max(0)
                annotations.append(dict(
                    id=len(annotations) + 1, image_id=image_id,
                    category_id=COCO_CATEGORIES[shape][0],
                    segmentation=[polygon.astype(float).ravel().tolist()],
                    area=float(cv2.contourArea(polygon)),
                    bbox=[float(x), float(y), float(x1 - x), float(y1 - y)],
                    iscrowd=0))
        with open(root / 'annotations' / f'instances_{split}.json', 'w') as f:
            json.dump(dict(images=images, annotations=annotations,
                           categories=categories), f)
    return root


def make_ade20k(root, num_train=32, num_val=8, size=(160, 160), seed=0):
    """Write an ADEChallengeData2016-layout segmentation dataset under
    ``root`` (the folder that contains ``ADEChallengeData2016``)."""
    base = Path(root) / 'ADEChallengeData2016'
    rng = np.random.default_rng(seed)
    for split, prefix, count in (('training', 'train', num_train),
                                 ('validation', 'val', num_val)):
        (base / 'images' / split).mkdir(parents=True, exist_ok=True)
        (base / 'annotations' / split).mkdir(parents=True, exist_ok=True)
        for index in range(count):
            image, shapes = _scene(rng, size[0], size[1],
                                   int(rng.integers(1, 4)), 32, 72)
            label = np.full(size, ADE_BACKGROUND, np.uint8)
            for shape, polygon in shapes:
                cv2.fillPoly(label, [polygon], ADE_LABELS[shape])
            label[:2] = 0  # an unlabelled strip, as ADE20K has
            stem = f'ADE_{prefix}_{index + 1:08d}'
            cv2.imwrite(str(base / 'images' / split / f'{stem}.jpg'), image,
                        [cv2.IMWRITE_JPEG_QUALITY, 95])
            cv2.imwrite(str(base / 'annotations' / split / f'{stem}.png'),
                        label)
    return Path(root)


def make_imagenet(root, num_train=48, num_val=12, size=(64, 64), seed=0):
    """Write an ImageNet-layout classification dataset under ``root``."""
    root = Path(root)
    (root / 'meta').mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for split, count in (('train', num_train), ('val', num_val)):
        lines = []
        for index in range(count):
            label = index % len(SHAPES)
            image = _background(rng, *size)
            extent = int(rng.integers(size[0] // 2, size[0] - 8))
            polygon = _polygon(rng, SHAPES[label], size[1] // 2,
                               size[0] // 2, extent)
            cv2.fillPoly(image, [polygon],
                         tuple(int(c) for c in rng.integers(90, 256, 3)))
            # train is one folder per class, val is flat, as in ImageNet
            rel = (f'{IMAGENET_WNIDS[label]}/{IMAGENET_WNIDS[label]}_'
                   f'{index:05d}.JPEG' if split == 'train' else
                   f'ILSVRC2012_val_{index + 1:08d}.JPEG')
            (root / split / rel).parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / split / rel), image)
            lines.append(f'{rel} {label}')
        (root / 'meta' / f'{split}.txt').write_text('\n'.join(lines) + '\n')
    return root


def make_all(root='data/toy', seed=0):
    """All three toy datasets under ``root``: coco/, ade/, imagenet/."""
    root = Path(root)
    make_coco(root / 'coco', seed=seed)
    make_ade20k(root / 'ade', seed=seed)
    make_imagenet(root / 'imagenet', seed=seed)
    return root
