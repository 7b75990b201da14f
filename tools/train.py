"""Train an mmdet, mmseg or mmpretrain config; the config's ``default_scope``
picks the library.

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp]
"""
import argparse
import os
import sys

import mmacmix  # noqa: F401  (compat fixes must be in place before the runner)
from mmacmix.utils.runner import (MissingCheckpointError, add_common_args,
                                  build_runner, check_init_checkpoints,
                                  close_distributed, load_config)


def parse_args():
    parser = argparse.ArgumentParser(description='Train a model')
    parser.add_argument('config', help='train config file path')
    parser.add_argument(
        '--resume', nargs='?', type=str, const='auto',
        help='resume from CKPT, or from the latest checkpoint in the work '
        'dir when no path is given')
    parser.add_argument('--amp', action='store_true',
                        help='automatic mixed precision training')
    add_common_args(parser)
    args = parser.parse_args()
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def main():
    args = parse_args()
    cfg = load_config(args.config, args.work_dir, args.cfg_options,
                      args.launcher)
    if args.amp:
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    if args.resume is not None:
        cfg.resume = True
        cfg.load_from = None if args.resume == 'auto' else args.resume
    check_init_checkpoints(cfg)  # before the runner reads any data
    build_runner(cfg).train()
    close_distributed()


if __name__ == '__main__':
    try:
        main()
    except MissingCheckpointError as err:
        sys.exit(f'error: {err}')
