"""Evaluate a checkpoint on an mmdet, mmseg or mmpretrain config's test set;
the config's ``default_scope`` picks the library.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out preds.pkl]
        [--allow-partial] [--show] [--show-dir DIR] [--wait-time S]
        [--cfg-options KEY=VALUE ...]

CHECKPOINT is a file, a URL or any prefix mmengine reads (``torchvision://``,
``open-mmlab://``, ...). Every tensor of the model must load from it, unless
``--allow-partial`` is given (docs/checkpoint_loading.md).
"""
import argparse
import json
import os
import sys

from mmengine.evaluator import DumpResults

import mmacmix  # noqa: F401  (compat fixes must be in place before the runner)
from mmacmix.engine.checkpoint import CheckpointError
from mmacmix.engine.runner import (DatasetNotFoundError, add_common_args,
                                   build_runner, check_datasets,
                                   close_distributed, load_config)
from mmacmix.engine.tool_options import add_tensorboard, enable_visualization


def parse_args():
    parser = argparse.ArgumentParser(description='Test (and eval) a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--out', help='also dump raw predictions to this .pkl')
    parser.add_argument(
        '--allow-partial', action='store_true',
        help='evaluate even if some of the model is missing from the '
        'checkpoint or has other shapes (warnings only)')
    parser.add_argument('--show', action='store_true',
                        help='show the predictions in a window')
    parser.add_argument(
        '--show-dir', help='save the drawn predictions under this folder')
    parser.add_argument('--wait-time', type=float, default=2,
                        help='seconds each window stays open with --show')
    add_common_args(parser)
    args = parser.parse_args()
    if args.out is not None and not args.out.endswith(('.pkl', '.pickle')):
        parser.error('--out must end with .pkl or .pickle')
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def main():
    args = parse_args()
    try:
        cfg = load_config(args.config, args.work_dir, args.cfg_options,
                          args.launcher)
        if args.tensorboard:
            add_tensorboard(cfg)
        if args.show or args.show_dir:
            enable_visualization(cfg, args.show, args.show_dir,
                                 args.wait_time)
    except ValueError as err:
        sys.exit(f'error: {err}')
    cfg.load_from = args.checkpoint
    if args.allow_partial:
        cfg.allow_partial_load = True
    try:
        check_datasets(cfg, ['test_dataloader'])
    except DatasetNotFoundError as err:
        sys.exit(f'error: {err}')
    runner = build_runner(cfg)
    if args.out is not None:
        runner.test_evaluator.metrics.append(
            DumpResults(out_file_path=args.out))
    metrics = runner.test()
    if runner.rank == 0:
        # one machine-readable line, for scripts and the tests
        print('metrics: ' + json.dumps({k: float(v)
                                        for k, v in metrics.items()}))
    close_distributed()


if __name__ == '__main__':
    try:
        main()
    except (FileNotFoundError, CheckpointError) as err:
        sys.exit(f'error: {err}')
