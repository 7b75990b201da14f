"""What tools/train.py and tools/test.py share: reading a config of any of
mmdet, mmseg or mmpretrain and building its runner in its own scope."""
import os.path as osp
from importlib.util import find_spec

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


def load_config(path, work_dir=None, cfg_options=None, launcher='none',
                tensorboard=False):
    """Read ``path`` and apply the command line's overrides. The work dir
    defaults to ``work_dirs/<config name>``, as in OpenMMLab's tools.
    ``tensorboard`` adds a TensorBoard backend to the visualizer."""
    cfg = Config.fromfile(path)
    cfg.launcher = launcher
    if cfg_options is not None:
        cfg.merge_from_dict(cfg_options)
    if tensorboard:
        add_tensorboard(cfg)
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(path))[0])
    return cfg


def add_tensorboard(cfg) -> None:
    """Append mmengine's ``TensorboardVisBackend`` to the visualizer's
    backends (it writes event files under the run's ``vis_data``).
    ``--cfg-options`` cannot append a dict to a list, hence a flag."""
    if find_spec('tensorboard') is None:
        raise ValueError('--tensorboard needs the tensorboard package: '
                         'pip install "mmacmix[tensorboard]"')
    if cfg.get('visualizer') is None:
        raise ValueError('--tensorboard: the config has no visualizer')
    backends = cfg.visualizer.setdefault('vis_backends', [])
    if all(b.get('type') != 'TensorboardVisBackend' for b in backends):
        backends.append(dict(type='TensorboardVisBackend'))


def enable_auto_scale_lr(cfg) -> None:
    """Turn on mmengine's linear learning-rate scaling (as mmdet's and
    mmpretrain's ``--auto-scale-lr``): the runner multiplies every lr by
    (processes x ``train_dataloader.batch_size``) /
    ``auto_scale_lr.base_batch_size``, the batch size the config's lr is
    for."""
    auto = cfg.get('auto_scale_lr')
    if not auto or 'base_batch_size' not in auto:
        raise ValueError(
            '--auto-scale-lr needs auto_scale_lr = dict(base_batch_size=N) '
            'in the config (the total batch size its lr is meant for)')
    auto.enable = True


# scope -> (visualization hook type, settings that make it draw every test
# image, its output folder argument): the three libraries' hooks differ
_VIS_HOOKS = {
    'mmdet': ('DetVisualizationHook', dict(draw=True), 'test_out_dir'),
    # mmseg's draws every `interval`-th image (50 by default)
    'mmseg': ('SegVisualizationHook', dict(draw=True, interval=1), None),
    'mmpretrain': ('VisualizationHook', dict(enable=True, interval=1),
                   'out_dir'),
}


def enable_visualization(cfg, show=False, show_dir=None,
                         wait_time=2.0) -> None:
    """Make the config's visualization hook draw the test predictions: show
    them in a window (``show``, ``wait_time`` seconds each) and/or save them
    under ``show_dir`` (mmdet and mmpretrain write the images there, mmseg
    in ``show_dir/vis_data/vis_image``). A relative ``show_dir`` is taken
    from the working directory (mmdet's and mmpretrain's hooks would put it
    under the run's folder, mmseg's not)."""
    scope = cfg.get('default_scope', 'mmengine')
    if scope not in _VIS_HOOKS:
        raise ValueError(f'--show/--show-dir: unsupported default_scope '
                         f'{scope!r} (supported: {", ".join(_VIS_HOOKS)})')
    hook_type, settings, out_key = _VIS_HOOKS[scope]
    hook = cfg.get('default_hooks', {}).get('visualization')
    if hook is None or hook.get('type', '').split('.')[-1] != hook_type:
        raise ValueError(
            f'--show/--show-dir need default_hooks.visualization = '
            f'dict(type={hook_type!r}) in the config')
    hook.update(settings, show=show, wait_time=wait_time)
    if show_dir is None:
        return
    show_dir = osp.abspath(show_dir)
    if out_key is None:
        # mmseg's hook draws through the visualizer, which saves under its
        # save_dir (otherwise the run's log dir)
        cfg.visualizer.save_dir = show_dir
    else:
        hook[out_key] = show_dir


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
