"""Optional settings tools/train.py and tools/test.py apply to a loaded
config: TensorBoard logging, learning-rate scaling, drawing predictions.
Each raises ValueError (one line, for the tools' ``error:`` line) when the
config cannot take it."""
import os.path as osp
from importlib.util import find_spec


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
    """Make the config's visualization hook draw every test prediction.

    Args:
        cfg (Config): an mmdet, mmseg or mmpretrain config with its
            library's visualization hook in ``default_hooks``.
        show (bool): show each image in a window.
        show_dir (str, optional): save the images under this folder (mmdet
            and mmpretrain write them there, mmseg in
            ``show_dir/vis_data/vis_image``). A relative path is taken from
            the working directory (mmdet's and mmpretrain's hooks would put
            it under the run's folder, mmseg's not).
        wait_time (float): seconds each window stays open.
    """
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
