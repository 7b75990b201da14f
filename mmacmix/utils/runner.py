"""What tools/train.py and tools/test.py share: reading a config of any of
mmdet, mmseg or mmpretrain and building its runner in its own scope."""
import os.path as osp

import torch.distributed as torch_dist
from mmengine.config import Config, DictAction
from mmengine.registry import RUNNERS, init_default_scope
from mmengine.runner import Runner


def add_common_args(parser):
    """Arguments every runner tool takes."""
    parser.add_argument('--work-dir', help='where to save logs and outputs')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override settings in the config, key=value')
    parser.add_argument(
        '--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none', help='job launcher')
    parser.add_argument(
        '--tensorboard', action='store_true',
        help='also log to TensorBoard (mmengine\'s TensorboardVisBackend, '
        'beside the config\'s backends; needs mmacmix[tensorboard])')
    # torch.distributed.launch passes --local-rank; torchrun sets LOCAL_RANK
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def load_config(path, work_dir=None, cfg_options=None, launcher='none'):
    """Read ``path`` and apply the command line's overrides. The work dir
    defaults to ``work_dirs/<config name>``, as in OpenMMLab's tools."""
    cfg = Config.fromfile(path)
    cfg.launcher = launcher
    if cfg_options is not None:
        cfg.merge_from_dict(cfg_options)
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(path))[0])
    return cfg


def build_runner(cfg) -> Runner:
    """The runner in the config's ``default_scope`` (mmdet, mmseg, ...)."""
    init_default_scope(cfg.get('default_scope', 'mmengine'))
    if 'runner_type' in cfg:
        return RUNNERS.build(cfg)
    return Runner.from_cfg(cfg)


def close_distributed() -> None:
    """End the process group once every rank is done. Left to interpreter
    shutdown, gloo's worker threads can abort the process ("terminate called
    without an active exception") after a run that succeeded."""
    if torch_dist.is_available() and torch_dist.is_initialized():
        torch_dist.barrier()
        torch_dist.destroy_process_group()
