"""Parameters and FLOPs (multiply-adds) of mmdet, mmseg and mmpretrain
configs, counted as the ACmix paper and OpenMMLab count them.

Usage: python tools/analysis_tools/get_flops.py CONFIG [CONFIG ...]
           [--shape H W] [--cfg-options KEY=VALUE ...] [--json OUT]

CONFIG is a file or a ``package::path`` config (e.g.
``mmdet::pvt/retinanet_pvt-t_fpn_1x_coco.py``). No dataset and no checkpoint
is read; see :func:`mmacmix.analysis.complexity.measure` for what is
traced. The default size is the scope's paper convention (800x1333 COCO,
512x2048 ADE20K, 224x224 ImageNet).
"""
import argparse
import json
import sys

from mmengine.config import DictAction

import mmacmix  # noqa: F401
from mmacmix.analysis.complexity import BAD_INPUT, measure, read_config


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('configs', nargs='+', help='config files')
    parser.add_argument(
        '--shape', type=int, nargs=2, help='input height and width')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings of every config, e.g. '
        'model.test_cfg.rpn.max_per_img=50')
    parser.add_argument('--json', help='also write the rows to this file')
    args = parser.parse_args(argv)
    if args.shape is not None and min(args.shape) < 1:
        parser.error(f'--shape must be two positive sizes, got {args.shape}')
    return args


def main(argv=None) -> list:
    args = parse_args(argv)
    try:
        return report(args)
    except BAD_INPUT as err:
        sys.exit(f'error: {err}')


def report(args) -> list:
    """Measure every config of ``args`` and print (and write) the rows."""
    rows = []
    for config in args.configs:
        cfg = read_config(config)
        if args.cfg_options:
            cfg.merge_from_dict(args.cfg_options)
        rows.append(dict(config=config, **measure(cfg, args.shape)))

    print(f'{"config":<60} {"input":>10} {"params (M)":>11} '
          f'{"FLOPs (G)":>10}  forward')
    for row in rows:
        height, width = row['input_shape']
        print(f'{row["config"]:<60} {f"{height}x{width}":>10} '
              f'{row["params"] / 1e6:>11.2f} {row["flops"] / 1e9:>10.2f}  '
              f'{row["forward"]}')
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(rows, f, indent=2)
    return rows


if __name__ == '__main__':
    main()
