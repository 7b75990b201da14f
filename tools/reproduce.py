"""One command from a table of the ACmix paper to its results: check what
each row needs, train and test every row, collect ours beside the paper.

Usage: python tools/reproduce.py TABLE [TABLE ...] [--gpus 8]
           [--launcher pytorch|slurm] [--partition P] [--work-dirs DIR]
           [--dry-run] [--cfg-options k=v ...]

TABLE is one of the paper's tables (``imagenet``: Table 1, ``ade20k``:
Table 2, ``coco-retinanet``: the RetinaNet rows of Tables 3-4,
``coco-swin``: the Swin rows of Table 4, ``coco-speed``: Table 5) or a
config (a name in configs/ or a path to any config file, e.g. a toy one).

1. Before anything runs, every row's dataset and ImageNet init checkpoint
   are checked; each missing one is listed with how to get it (the
   converter command, or which ``configs/*_in1k.py`` to train first). An
   init checkpoint that an earlier row of the same command trains is
   copied from that row's last checkpoint instead.
2. Each row trains with ``tools/dist_train.sh`` (``--launcher pytorch``)
   or ``tools/slurm_train.sh`` (``--launcher slurm``) into
   ``WORK_DIRS/<config name>``, then tests its last checkpoint with
   ``tools/dist_test.sh`` / ``tools/slurm_test.sh``. A finished row is
   skipped; an interrupted one resumes from its last checkpoint.
3. The metrics are collected into the paper's table (ours beside the
   paper, with the difference), printed and written as
   ``WORK_DIRS/reproduce.{md,csv,json}``.

``--dry-run`` prints the plan (the commands, in order) and changes
nothing. ``--cfg-options`` are passed to every train and test command.
"""
import argparse
import logging
import os
import os.path as osp
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from mmengine.config import DictAction
from mmengine.logging import MMLogger

import mmacmix  # noqa: F401
from mmacmix.analysis import model_zoo
from mmacmix.engine.runner import how_to_get, init_checkpoints, load_config

TOOLS_DIR = Path(__file__).resolve().parent  # the launchers beside it
# table name -> (what it is, its rows' configs in the paper's order)
TABLES = {
    'imagenet': ('Table 1, ImageNet-1K classification', [
        'resnet_acmix_26_in1k', 'resnet_acmix_38_in1k',
        'resnet_acmix_50_in1k', 'san_acmix_10_in1k', 'san_acmix_15_in1k',
        'san_acmix_19_in1k', 'pvt_acmix_t_in1k', 'pvt_acmix_s_in1k',
        'swin_acmix_t_in1k', 'swin_acmix_s_in1k']),
    'ade20k': ('Table 2, ADE20K semantic segmentation', [
        'fpn_pvt_acmix_t_40k_ade20k', 'fpn_pvt_acmix_s_40k_ade20k',
        'upernet_swin_acmix_t_160k_ade20k',
        'upernet_swin_acmix_s_160k_ade20k']),
    'coco-retinanet': ('Tables 3-4, COCO RetinaNet', [
        'retinanet_resnet_acmix_50_1x_coco', 'retinanet_san_acmix_19_1x_coco',
        'retinanet_pvt_acmix_t_1x_coco', 'retinanet_pvt_acmix_t_3x_coco']),
    'coco-swin': ('Table 4, COCO (Cascade) Mask R-CNN Swin-T 3x', [
        'mask_rcnn_swin_acmix_t_3x_coco',
        'cascade_mask_rcnn_swin_acmix_t_3x_coco']),
    'coco-speed': ('Table 5, COCO RetinaNet PVT-S/L (mAP; FPS is not '
                   'measured here)', [
                       'retinanet_pvt_acmix_s_1x_coco',
                       'retinanet_pvt_acmix_l_1x_coco']),
}
# dataset type -> where to get it (put where data_root says)
DATASETS = {
    'CocoDataset': 'COCO 2017 (https://cocodataset.org: train2017, val2017 '
                   'and annotations_trainval2017) unpacked as '
                   '{root}/{{train2017,val2017,annotations}}',
    'ADE20KDataset': 'ADEChallengeData2016.zip (http://sceneparsing.csail.'
                     'mit.edu) unpacked as {root}',
    'ImageNet': 'ImageNet-1k (https://image-net.org) as {root}/{{train,val}}'
                ' with meta/{{train,val}}.txt (mmpretrain\'s layout)',
}
TRAIN_DONE = 'reproduce_train.done'
TEST_DONE = 'reproduce_test.done'


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        'tables', nargs='+', metavar='TABLE',
        help=f'{", ".join(TABLES)}, or configs (names or paths)')
    parser.add_argument('--gpus', type=int, default=8,
                        help='processes (GPUs) per row (default 8, the '
                        "paper's; on a machine without GPUs they train on "
                        'CPU with gloo)')
    parser.add_argument('--launcher', choices=['pytorch', 'slurm'],
                        default='pytorch')
    parser.add_argument('--partition', help='Slurm partition')
    parser.add_argument('--work-dirs', default='work_dirs',
                        help='root of the rows\' work dirs and the results')
    parser.add_argument('--dry-run', action='store_true',
                        help='print the plan; run and change nothing')
    parser.add_argument('--cfg-options', nargs='+', default=[],
                        metavar='KEY=VALUE',
                        help='passed to every train and test command')
    args = parser.parse_args(argv)
    if args.launcher == 'slurm' and not args.partition:
        parser.error('--launcher slurm needs --partition')
    if args.gpus < 1:
        parser.error('--gpus must be at least 1')
    options = argparse.ArgumentParser()
    options.add_argument('--o', nargs='*', action=DictAction, default={})
    args.overrides = options.parse_args(['--o', *args.cfg_options]).o
    return args


def select_rows(names):
    """``{config name: path}`` of the tables' and configs' rows, in
    order."""
    stock = model_zoo.stock_configs()
    rows = {}
    for name in names:
        if name in TABLES:
            rows.update((n, stock[n]) for n in TABLES[name][1])
        elif name in stock:
            rows[name] = stock[name]
        elif name.endswith('.py') and osp.isfile(name):
            rows[Path(name).stem] = Path(name).resolve()
        else:
            raise ValueError(f'unknown table or config {name!r} (tables: '
                             f'{", ".join(TABLES)}; or a config)')
    return rows


def shown(path):
    """``path`` as the plan prints it: relative to the working directory
    when inside it."""
    rel = osp.relpath(path)
    return rel if not rel.startswith('..') else str(path)


def datasets(cfg):
    """``(dataset type, data_root, [paths that must exist])`` of the train
    and test sets of ``cfg``."""
    found = {}
    for loader in ('train_dataloader', 'test_dataloader'):
        dataset = cfg.get(loader, {}).get('dataset', {})
        while 'dataset' in dataset:  # wrappers (RepeatDataset, ...)
            dataset = dataset['dataset']
        root = dataset.get('data_root', '')
        paths = [root] if root else []
        ann = dataset.get('ann_file')
        if ann:
            paths.append(ann if osp.isabs(ann) else osp.join(root, ann))
        found.setdefault(root, (dataset.get('type', '?'), root, []))
        found[root][2].extend(p for p in paths if p not in found[root][2])
    return list(found.values())


def dataset_hint(kind, root):
    if 'toy' in Path(root).parts:
        return ('the toy data: `python tools/misc/make_toy_data.py --out '
                f'{osp.dirname(osp.normpath(root))}`')
    hint = DATASETS.get(kind, 'the dataset, where {root} says')
    return hint.format(root=osp.normpath(root))


def last_checkpoint(work_dir):
    """The checkpoint ``WORK_DIR/last_checkpoint`` names, or None."""
    marker = Path(work_dir) / 'last_checkpoint'
    if not marker.is_file():
        return None
    path = marker.read_text().strip()
    return path if path and osp.isfile(path) else None


def plan_rows(rows, args):
    """``(steps, missing)``: the steps of every row in order, and a line for
    each missing prerequisite (with the rows that need it)."""
    steps, produced, copies = [], {}, set()
    missing = {}  # line -> rows needing it

    for name, path in rows.items():
        cfg = load_config(str(path), cfg_options=args.overrides or None)
        work_dir = osp.join(args.work_dirs, name)
        for kind, root, paths in datasets(cfg):
            absent = [p for p in paths if not osp.exists(p)]
            if absent:
                missing.setdefault(
                    f'dataset {absent[0]} not found; get '
                    f'{dataset_hint(kind, root)}', []).append(name)
        for key, ckpt in init_checkpoints(cfg):
            if osp.isfile(ckpt):
                continue
            producer = produced.get(osp.splitext(osp.basename(ckpt))[0])
            if producer:
                if ckpt not in copies:
                    copies.add(ckpt)
                    steps.append(dict(kind='copy', row=name, src=producer,
                                      dst=ckpt))
                continue
            missing.setdefault(
                f'init checkpoint {ckpt} ({key}) not found; '
                + '; or '.join(how_to_get(ckpt)), []).append(name)
        state = ('finished' if osp.isfile(osp.join(work_dir, TEST_DONE))
                 else 'trained' if osp.isfile(osp.join(work_dir, TRAIN_DONE))
                 else 'interrupted' if last_checkpoint(work_dir)
                 else 'new')
        steps.append(dict(kind='row', row=name, config=path,
                          work_dir=work_dir, state=state))
        produced[name] = work_dir
    return steps, [f'{line} (needed by {", ".join(needs)})'
                   for line, needs in missing.items()]


def launch(script, args, head, tail, job):
    """``(argv, env, shell line)`` of a train or test launch: ``head`` are
    the script's positional arguments (config, then checkpoint or work
    dir), ``tail`` the options for train.py / test.py."""
    if args.launcher == 'pytorch':
        path = TOOLS_DIR / f'dist_{script}.sh'
        rest = [*head[:2], str(args.gpus), *head[2:], *tail]
        env = {}
    else:
        path = TOOLS_DIR / f'slurm_{script}.sh'
        rest = [args.partition, job, *head, *tail]
        env = dict(GPUS=str(args.gpus), GPUS_PER_NODE=str(min(args.gpus, 8)))
    line = [f'{k}={v}' for k, v in env.items()] + [shown(path), *rest]
    return ['bash', str(path), *rest], env, ' '.join(
        a if a.startswith('"$(') else shlex.quote(a) for a in line)


def commands(step, args):
    """``[(what, argv or None, env, shell line)]`` of one row: train
    (unless trained), then test (unless tested). The test's checkpoint is
    known once training ended: the plan shows ``$(cat last_checkpoint)``."""
    if step['kind'] == 'copy':
        src = osp.join(step['src'], 'last_checkpoint')
        return [('copy', None, {},
                 f'mkdir -p {shlex.quote(osp.dirname(step["dst"]) or ".")} '
                 f'&& cp "$(cat {shlex.quote(src)})" '
                 f'{shlex.quote(step["dst"])}')]
    name, config, work_dir = step['row'], shown(step['config']), \
        step['work_dir']
    options = ['--cfg-options', *args.cfg_options] * bool(args.cfg_options)
    out = []
    if step['state'] in ('new', 'interrupted'):
        resume = ['--resume'] * (step['state'] == 'interrupted')
        if args.launcher == 'pytorch':
            head, tail = [config], ['--work-dir', work_dir, *resume,
                                    *options]
        else:
            head, tail = [config, work_dir], [*resume, *options]
        out.append(('train', *launch('train', args, head, tail, name)))
    if step['state'] != 'finished':
        ckpt = last_checkpoint(work_dir) if step['state'] == 'trained' else \
            f'"$(cat {shlex.quote(osp.join(work_dir, "last_checkpoint"))})"'
        out.append(('test', *launch('test', args, [config, ckpt],
                                    ['--work-dir', work_dir, *options],
                                    name)))
    return out


def print_plan(steps, missing):
    for line in missing:
        print(f'missing: {line}', file=sys.stderr)
    print('plan:' if steps else 'plan: nothing to run')
    number = 0
    for step in steps:
        if step['kind'] == 'row' and step['state'] == 'finished':
            print(f'   {step["row"]}: finished, skipped')
            continue
        note = ' (resumes)' if step.get('state') == 'interrupted' else ''
        for what, _, _, line in step['cmds']:
            number += 1
            print(f'{number:3d}. {line}{note if what == "train" else ""}')
    sys.stdout.flush()


def run_step(step):
    """Run one row's commands (or the copy), marking what finished."""
    for what, argv, env, line in step['cmds']:
        if what == 'copy':
            src = last_checkpoint(step['src'])
            Path(step['dst']).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, step['dst'])
            print(f'copied {src} to {step["dst"]}', flush=True)
            continue
        if what == 'test' and argv is not None and '"$(cat' in line:
            # the checkpoint the training just saved
            ckpt = last_checkpoint(step['work_dir'])
            if ckpt is None:
                raise RuntimeError(f'{step["row"]}: no checkpoint in '
                                   f'{step["work_dir"]} after training')
            index = argv.index(next(a for a in argv if a.startswith('"$(')))
            argv = argv[:index] + [ckpt] + argv[index + 1:]
        print(f'==> {step["row"]} {what}: {line}', flush=True)
        code = subprocess.call(argv, env={**os.environ, **env})
        if code != 0:
            raise RuntimeError(f'{step["row"]}: {what} exited {code}; '
                               'run the same command again to resume')
        done = TRAIN_DONE if what == 'train' else TEST_DONE
        Path(step['work_dir'], done).write_text(line + '\n')


def collect(rows, work_dirs):
    """The rows' metrics beside the paper: Markdown printed, and
    ``WORK_DIRS/reproduce.{md,csv,json}``."""
    paper = model_zoo.load_paper()
    table = model_zoo.build_rows(
        paper, rows, work_dirs,
        model_zoo.CountCache(osp.join(work_dirs, 'paper_table_cache.json')),
        model_zoo.code_fingerprint())
    text = model_zoo.markdown(table, paper, with_paper_only=False)
    Path(work_dirs).mkdir(parents=True, exist_ok=True)
    Path(work_dirs, 'reproduce.md').write_text(text + '\n')
    model_zoo.write_records(table, osp.join(work_dirs, 'reproduce.json'),
                            osp.join(work_dirs, 'reproduce.csv'))
    print(text)
    print(f'written to {osp.join(work_dirs, "reproduce.{md,csv,json}")}')
    return table


def main(argv=None):
    args = parse_args(argv)
    MMLogger.get_current_instance().setLevel(logging.WARNING)
    rows = select_rows(args.tables)
    steps, missing = plan_rows(rows, args)
    for step in steps:
        step['cmds'] = commands(step, args)
    print_plan(steps, missing)
    if args.dry_run:
        return steps
    if missing:
        raise ValueError(f'{len(missing)} missing prerequisite(s), listed '
                         'above; nothing was run')
    for step in steps:
        run_step(step)
    return collect(rows, args.work_dirs)


if __name__ == '__main__':
    try:
        main()
    except (ValueError, RuntimeError, FileNotFoundError) as err:
        sys.exit(f'error: {err}')
