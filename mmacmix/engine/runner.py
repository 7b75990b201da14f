"""What tools/train.py and tools/test.py share: reading a config of any of
mmdet, mmseg or mmpretrain, checking that the files it starts from exist,
and building its runner in its own scope."""
import glob
import os
import os.path as osp
import shlex

import torch.distributed as torch_dist
from mmengine.config import Config, DictAction
from mmengine.registry import RUNNERS, init_default_scope
from mmengine.runner import Runner

from ..utils.package_files import config_dir, find_config
from .checkpoint import load_checkpoint_file


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
    """Read ``path`` (a file, or an installed config by name:
    :func:`~mmacmix.utils.package_files.find_config`) and apply the command
    line's overrides. The work dir defaults to ``work_dirs/<config name>``,
    as in OpenMMLab's tools."""
    cfg = Config.fromfile(find_config(path))
    cfg.launcher = launcher
    if cfg_options is not None:
        cfg.merge_from_dict(cfg_options)
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(path))[0])
    return cfg


# ImageNet weights published elsewhere that tools/model_converters/
# acmix_official.py turns into our init checkpoints: checkpoint stem ->
# (file to convert, what it is)
CONVERTIBLE_WEIGHTS = {
    'swin_acmix_t_in1k': ('swin_acmix_t.pth', 'the released Swin-ACmix-T '
                          'ImageNet weights (LeapLabTHU/ACmix README)'),
    'swin_acmix_s_in1k': ('swin_acmix_s.pth', 'the released Swin-ACmix-S '
                          'ImageNet weights (LeapLabTHU/ACmix README)'),
    **{f'pvt_acmix_{size}_in1k': (
        f'pvt_{name}.pth', f"whai362/PVT's PVT v1 {name} ImageNet weights "
        '(the convolution paths then start at their shift init, rates 1 and '
        '0, not a trained PVT-ACmix)')
       for size, name in [('t', 'tiny'), ('s', 'small'), ('m', 'medium'),
                          ('l', 'large')]},
}


class MissingCheckpointError(FileNotFoundError):
    """An init checkpoint a config starts from does not exist."""


def init_checkpoints(cfg) -> list:
    """``(key, path)`` of every local file a ``Pretrained`` ``init_cfg`` in
    ``cfg.model`` loads (URLs and ``prefix://`` names left out)."""
    found = []

    def visit(node, key):
        if isinstance(node, dict):
            init = node.get('init_cfg')
            for item in init if isinstance(init, list) else [init]:
                if isinstance(item, dict) and item.get(
                        'type') == 'Pretrained' and isinstance(
                            item.get('checkpoint'), str) and \
                        '://' not in item['checkpoint']:
                    found.append((f'{key}.init_cfg', item['checkpoint']))
            for name, value in node.items():
                if name != 'init_cfg':
                    visit(value, f'{key}.{name}')
        elif isinstance(node, (list, tuple)):
            for i, value in enumerate(node):
                visit(value, f'{key}.{i}')

    visit(cfg.get('model', {}), 'model')
    return found


def how_to_get(checkpoint) -> list:
    """The ways to produce the init checkpoint ``checkpoint``, as commands
    (with what each does), best first."""
    stem = osp.splitext(osp.basename(checkpoint))[0]
    dst = shlex.quote(checkpoint)
    ways = []
    config = osp.join('configs', f'{stem}.py')
    if (config_dir() / f'{stem}.py').is_file():
        ways.append(f'train {config} and copy its last checkpoint: '
                    f'`tools/dist_train.sh {config} 8 && cp "$(cat '
                    f'work_dirs/{stem}/last_checkpoint)" {dst}`')
    if stem in CONVERTIBLE_WEIGHTS:
        src, what = CONVERTIBLE_WEIGHTS[stem]
        ways.append(f'convert {what}: `python tools/model_converters/'
                    f'acmix_official.py {src} {dst}`')
    if not ways:
        ways.append(f'train an ImageNet classifier with this backbone '
                    f'(there is no {config}) and copy its last checkpoint '
                    f'to {dst}')
    return ways


def check_init_checkpoints(cfg) -> None:
    """Stop before anything is built if an init checkpoint of ``cfg`` is
    missing, naming the ways to produce it. Training needs them (the runner
    initialises the weights before it resumes or loads ``load_from``);
    testing a trained model does not.

    Raises:
        MissingCheckpointError: one line, for the tools' ``error:`` line.
    """
    for key, path in init_checkpoints(cfg):
        if not osp.isfile(path):
            ways = how_to_get(path)
            raise MissingCheckpointError(
                f'init checkpoint {path} ({key}) not found; produce it by '
                + '; or '.join(f'({i}) {way}' for i, way in
                               enumerate(ways, 1)) +
                f'; or train from scratch on purpose with --cfg-options '
                f'{key}=None')


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


class ResumeError(ValueError):
    """``--resume`` has nothing (or nothing usable) to resume from."""


class DatasetNotFoundError(FileNotFoundError):
    """A dataloader's dataset is not where its config says."""


def _complete_checkpoints(folder: str) -> list:
    """The checkpoints in ``folder``, newest first; saves are atomic
    (:mod:`mmacmix.engine.patches.mmengine`), so every ``*.pth`` there is
    complete."""
    found = glob.glob(osp.join(glob.escape(folder), '*.pth'))
    return sorted(found, key=osp.getmtime, reverse=True)


def _resume_hint(work_dir: str) -> str:
    found = _complete_checkpoints(work_dir)
    if not found:
        return f'there is no checkpoint (*.pth) in {work_dir} either'
    return (f'checkpoints in {work_dir}, newest first: '
            f'{", ".join(osp.basename(p) for p in found[:5])}; resume from '
            f'one with --resume {found[0]}')


def latest_checkpoint(work_dir: str):
    """The checkpoint that ``work_dir``'s ``last_checkpoint`` names, or
    None when there is no ``last_checkpoint``.

    Raises:
        ResumeError: ``last_checkpoint`` is empty or names a local file
            that does not exist; the message lists the checkpoints there.
    """
    record = osp.join(work_dir, 'last_checkpoint')
    if not osp.isfile(record):
        return None
    with open(record) as f:
        path = f.read().strip()
    if not path:
        raise ResumeError(f'{record} is empty; {_resume_hint(work_dir)}')
    if '://' not in path and not osp.isfile(path):
        raise ResumeError(
            f'{record} names {path}, which does not exist (moved or '
            f'deleted?); {_resume_hint(work_dir)}')
    return path


def check_resumable(path: str) -> None:
    """``path`` is a checkpoint the training runner wrote (``meta`` with
    the epoch and iteration, ``state_dict``); remote ones are left to the
    runner.

    Raises:
        ResumeError: it does not exist or is no runner checkpoint.
        CheckpointError: it cannot be read (corrupt, unsafe).
    """
    if '://' in path:
        return
    if not osp.isfile(path):
        raise ResumeError(f'--resume {path}: no such file')
    checkpoint = load_checkpoint_file(path, map_location='cpu')
    meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else None
    if (isinstance(meta, dict) and {'epoch', 'iter'} <= set(meta)
            and 'state_dict' in checkpoint):
        return
    held = (f'the keys {sorted(map(str, checkpoint))[:6]}' if isinstance(
        checkpoint, dict) else f'a {type(checkpoint).__name__}')
    raise ResumeError(
        f'--resume {path}: not a checkpoint written by the training runner '
        "(it needs 'meta' with the epoch and iteration, 'state_dict' and "
        f"the optimizer's state; this file holds {held}). To start a new "
        f'run from its weights, drop --resume and pass --cfg-options '
        f'load_from={path}')


def resolve_resume(cfg, resume=None, or_start: bool = False):
    """Decide what a training run resumes from, before the runner is built,
    and set ``cfg.resume`` and ``cfg.load_from`` accordingly.

    Args:
        cfg (Config): The config; ``resume=True`` in it counts as
            ``--resume`` (of its ``load_from``, or of the latest
            checkpoint).
        resume (str, optional): ``--resume``'s value: a checkpoint, or
            ``'auto'`` for the latest one in the work dir.
        or_start (bool): ``--resume-or-start``: resume from the latest
            checkpoint in the work dir if there is one, else start afresh.

    Returns:
        str | None: The checkpoint to resume from; None to start afresh.

    Raises:
        ResumeError: ``--resume`` with nothing to resume from, a
            ``last_checkpoint`` naming a missing file, or a file that is no
            runner checkpoint.
    """
    if resume is None and not or_start:
        if not cfg.get('resume'):
            return None
        resume = cfg.get('load_from') or 'auto'
    if or_start or resume == 'auto':
        path = latest_checkpoint(cfg.work_dir)
        if path is None:
            if or_start:
                cfg.resume = False
                return None
            raise ResumeError(
                f'--resume: nothing to resume in {cfg.work_dir} (no '
                f'last_checkpoint file); {_resume_hint(cfg.work_dir)}. '
                'To start a new run, drop --resume, or use '
                '--resume-or-start to resume when there is a checkpoint '
                'and start afresh otherwise')
    else:
        path = resume
    check_resumable(path)
    cfg.resume = True
    cfg.load_from = path
    return path


def _dataset_cfgs(dataset: dict):
    """``dataset`` and the datasets it wraps (Repeat/ConcatDataset, ...)."""
    yield dataset
    inner = [dataset.get('dataset')] + list(dataset.get('datasets') or [])
    for wrapped in inner:
        if isinstance(wrapped, dict):
            yield from _dataset_cfgs(wrapped)


def _local(path) -> bool:
    return isinstance(path, str) and bool(path) and '://' not in path


def check_datasets(cfg, loaders) -> None:
    """The ``data_root``, ``ann_file`` and ``data_prefix`` folders of the
    datasets of ``loaders`` (e.g. ``['train_dataloader']``) exist.

    Raises:
        DatasetNotFoundError: naming the loader, the missing path and its
            ``data_root``, and where the data comes from.
    """
    for loader in loaders:
        if not cfg.get(loader) or not cfg[loader].get('dataset'):
            continue
        for dataset in _dataset_cfgs(cfg[loader].dataset):
            root = dataset.get('data_root') or ''
            if _local(root) and not osp.isdir(root):
                missing = f'data_root {root!r} does not exist'
            else:
                # mmpretrain's ImageNet: the split is the image folder
                prefixes = (dataset.get('data_prefix') or dataset.get('split')
                            or {})
                if not isinstance(prefixes, dict):
                    prefixes = dict(data_prefix=prefixes)
                paths = [('ann_file', dataset.get('ann_file'))] + list(
                    prefixes.items())
                missing = next(
                    (f'{name} {osp.join(root, path)!r} does not exist '
                     f'(under data_root {root!r})'
                     for name, path in paths if _local(path)
                     and not osp.exists(osp.join(root, path))), None)
            if missing:
                raise DatasetNotFoundError(
                    f'the dataset of {loader} is missing: {missing}, '
                    f'relative to {os.getcwd()}. For the toy datasets of '
                    'configs/toy run `python tools/misc/make_toy_data.py '
                    '--out data/toy` here; for a real dataset, put it in '
                    'its standard OpenMMLab layout under data_root or '
                    'point data_root at it with --cfg-options')
