"""Run a detector or segmentor on one image and draw what it predicts:
boxes and masks (mmdet) or the segmentation overlay (mmseg).

Usage: python tools/demo/image_demo.py IMAGE CONFIG CHECKPOINT
           --out-file vis.png [--device cpu] [--score-thr 0.3]
           [--allow-partial]

The config's ``default_scope`` picks the library: mmdet's
``init_detector``/``inference_detector`` or mmseg's
``init_model``/``inference_model``, then the config's visualizer. The
output has the input's size. Class names come from the checkpoint's
``meta.dataset_meta`` (runner checkpoints have it). A summary of the
prediction is printed. Every tensor of the model must load from the
checkpoint (a file, a URL or an mmengine prefix), unless ``--allow-partial``
is given; a bad input of any kind ends in one ``error:`` line.
"""
import argparse
import importlib
import os.path as osp
import sys

import mmcv
import numpy as np
import torch
from mmengine.config import Config

import mmacmix  # noqa: F401
from mmacmix.engine.checkpoint import CheckpointError, require_loaded


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('image', help='image file')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--out-file', required=True, help='output image')
    parser.add_argument('--device', default='cpu', help='e.g. cpu, cuda:0')
    parser.add_argument('--score-thr', type=float, default=0.3,
                        help='draw boxes and masks scoring at least this '
                        '(detection)')
    parser.add_argument('--allow-partial', action='store_true',
                        help='draw even if part of the model is missing '
                        'from the checkpoint (warnings only)')
    return parser.parse_args(argv)


def check_inputs(args):
    """Refuse a missing or undecodable image, a missing config or local
    checkpoint, and a device this machine lacks, before building anything.

    Raises:
        FileNotFoundError, ValueError: naming the input.
    """
    for path, what in ((args.image, 'image'), (args.config, 'config'),
                       (args.checkpoint, 'checkpoint')):
        # URLs and prefixed paths are found by mmengine's loaders
        if not osp.isfile(path) and (what != 'checkpoint'
                                     or '://' not in path):
            raise FileNotFoundError(f'{what} {path} can not be found')
    if mmcv.imread(args.image) is None:
        raise ValueError(f'image {args.image} is not an image file')
    try:
        device = torch.device(args.device)
    except RuntimeError as err:
        raise ValueError(f'--device {args.device!r} is no device: {err}')
    if device.type not in ('cpu', 'cuda'):
        raise ValueError(f'--device {args.device!r}: this demo runs on cpu '
                         'or cuda')
    if device.type == 'cuda' and (device.index or 0) >= (
            torch.cuda.device_count()):
        raise ValueError(f'--device {args.device!r}: this machine has '
                         f'{torch.cuda.device_count()} CUDA devices')


def read_config(path):
    """The config at ``path``; any failure to parse it is a ValueError."""
    try:
        return Config.fromfile(path)
    except Exception as err:  # noqa: B902  (syntax, bad _base_, type...)
        raise ValueError(f'cannot read config {path}: '
                         f'{type(err).__name__}: {err}') from None


def predict(scope, cfg, checkpoint, image, device):
    """``(model, prediction)`` of the config's model on ``image``."""
    if scope == 'mmdet':
        from mmdet.apis import inference_detector, init_detector
        model = init_detector(cfg, checkpoint, device=device)
        return model, inference_detector(model, image)
    if scope == 'mmseg':
        from mmseg.apis import inference_model, init_model
        model = init_model(cfg, checkpoint, device=device)
        return model, inference_model(model, image)
    raise ValueError(f'{scope!r} configs are not supported: this demo draws '
                     'detections (mmdet) and segmentations (mmseg)')


def summarize(scope, prediction, classes, score_thr):
    """Printable lines describing the prediction."""
    if scope == 'mmdet':
        instances = prediction.pred_instances
        keep = instances.scores >= score_thr
        lines = [f'{int(keep.sum())} of {len(instances)} detections score '
                 f'>= {score_thr}']
        for label, score, box in zip(instances.labels[keep],
                                     instances.scores[keep],
                                     instances.bboxes[keep]):
            corners = ', '.join(f'{v:.1f}' for v in box.tolist())
            lines.append(f'  {classes[label]:<20} {score:.3f}  [{corners}]')
        return lines
    labels = prediction.pred_sem_seg.data.cpu().numpy().ravel()
    ids, counts = np.unique(labels, return_counts=True)
    order = np.argsort(-counts)
    lines = [f'{len(ids)} classes predicted (share of the pixels):']
    lines += [f'  {classes[ids[i]]:<20} {counts[i] / labels.size:.4f}'
              for i in order]
    return lines


def main(argv=None):
    args = parse_args(argv)
    check_inputs(args)
    cfg = read_config(args.config)
    scope = cfg.get('default_scope', 'mmdet')
    if 'model' not in cfg:
        raise ValueError(f'config {args.config} defines no model')
    try:
        with require_loaded('off' if args.allow_partial else 'all'):
            model, prediction = predict(scope, cfg, args.checkpoint,
                                        args.image, args.device)
    except (KeyError, AttributeError) as err:
        if err.args == ('meta', ):  # mmseg's init_model reads it
            raise ValueError(f'checkpoint {args.checkpoint} has no meta '
                             '(runner checkpoints have it)') from None
        # a type no library registers, a model without a backbone, ...
        raise ValueError(f'config {args.config} does not build a model: '
                         f'{type(err).__name__}: {err}') from None
    classes = model.dataset_meta['classes']
    print('\n'.join(summarize(scope, prediction, classes, args.score_thr)))

    # no backends: the image goes to --out-file, not to a work dir
    registry = importlib.import_module(f'{scope}.registry')
    visualizer = registry.VISUALIZERS.build(
        dict(model.cfg.visualizer, vis_backends=None))
    visualizer.dataset_meta = model.dataset_meta
    extra = dict(pred_score_thr=args.score_thr) if scope == 'mmdet' else {}
    visualizer.add_datasample(
        'prediction', mmcv.imread(args.image, channel_order='rgb'),
        data_sample=prediction, draw_gt=False, show=False,
        out_file=args.out_file, **extra)
    print(f'wrote {args.out_file}')
    return prediction


if __name__ == '__main__':
    try:
        main()
    except (FileNotFoundError, ValueError, CheckpointError) as err:
        sys.exit(f'error: {err}')
