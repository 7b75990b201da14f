"""What tools/train.py and tools/test.py share: reading a config of any of
mmdet, mmseg or mmpretrain, checking that the files it starts from exist,
and building its runner in its own scope."""
import os.path as osp
import shlex

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
CONFIG_DIR = osp.join(osp.dirname(__file__), '..', '..', 'configs')


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
    if osp.isfile(osp.join(CONFIG_DIR, f'{stem}.py')):
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
