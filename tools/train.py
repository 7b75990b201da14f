"""Train an mmdet, mmseg or mmpretrain config; the config's ``default_scope``
picks the library.

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp]
        [--auto-scale-lr] [--tensorboard] [--cfg-options KEY=VALUE ...]
    python tools/train.py CONFIG --resume-or-start [--allow-partial]

``--resume`` continues from CKPT, or without a path from the checkpoint the
work dir's ``last_checkpoint`` names; with nothing to resume it stops with
an error. ``--resume-or-start`` resumes when there is something to resume
and starts afresh otherwise (e.g. for jobs that a cluster may restart).

``load_from`` and ``Pretrained`` inits must fill most of the model (or the
module they init) unless ``--allow-partial`` is given or the config sets
``allow_partial_load = True`` (docs/checkpoint_loading.md).
"""
import argparse
import os
import sys

import mmacmix  # noqa: F401  (compat fixes must be in place before the runner)
from mmacmix.engine.checkpoint import CheckpointError
from mmacmix.engine.runner import (DatasetNotFoundError,
                                   MissingCheckpointError, ResumeError,
                                   add_common_args, build_runner,
                                   check_datasets, check_init_checkpoints,
                                   close_distributed, load_config,
                                   resolve_resume)
from mmacmix.engine.tool_options import add_tensorboard, enable_auto_scale_lr


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Train a model')
    parser.add_argument('config', help='train config file path')
    resume = parser.add_mutually_exclusive_group()
    resume.add_argument(
        '--resume', nargs='?', type=str, const='auto',
        help='resume from CKPT, or from the latest checkpoint in the work '
        'dir when no path is given; an error if there is none')
    resume.add_argument(
        '--resume-or-start', action='store_true',
        help='resume from the latest checkpoint in the work dir if there '
        'is one, else start a new run')
    parser.add_argument('--amp', action='store_true',
                        help='automatic mixed precision training')
    parser.add_argument(
        '--allow-partial', action='store_true',
        help='start from load_from or Pretrained init_cfg files that fill '
        'only part of the model (fine-tuning; warnings only)')
    parser.add_argument(
        '--auto-scale-lr', action='store_true',
        help='scale the lr linearly with the total batch size (processes x '
        'batch size) over the config\'s auto_scale_lr.base_batch_size')
    add_common_args(parser)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def main(argv=None):
    args = parse_args(argv)
    try:
        cfg = load_config(args.config, args.work_dir, args.cfg_options,
                          args.launcher)
        if args.tensorboard:
            add_tensorboard(cfg)
        if args.auto_scale_lr:
            enable_auto_scale_lr(cfg)
    except ValueError as err:
        sys.exit(f'error: {err}')
    if args.amp:
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    if args.allow_partial:
        cfg.allow_partial_load = True
    try:
        resolve_resume(cfg, args.resume, args.resume_or_start)
        check_init_checkpoints(cfg)
        check_datasets(cfg, ['train_dataloader'] +
                       (['val_dataloader'] if cfg.get('val_cfg') else []))
    except (ResumeError, DatasetNotFoundError, MissingCheckpointError,
            CheckpointError) as err:
        sys.exit(f'error: {err}')
    build_runner(cfg).train()
    close_distributed()


if __name__ == '__main__':
    try:
        main()
    except (FileNotFoundError, CheckpointError) as err:
        sys.exit(f'error: {err}')
