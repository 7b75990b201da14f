"""Write the model index that ``mim search mmacmix`` reads: ``model-index.yml``
and one metafile per family in ``configs/metafiles/``.

Usage: python .dev_scripts/make_metafiles.py [--check | --reuse-counts]
           [--paper FILE]

Every config in ``configs/*.py`` (toy configs and ``_base_`` left out) gets
one model entry in the metafile of its family (OpenMMLab's
Collections/Models schema):

* ``Metadata``: ``Parameters`` and ``FLOPs`` (multiply-adds) are ours,
  counted as ``tools/analysis_tools/paper_table.py`` counts them, at the
  paper's input size (``Input Size``), from the counts committed in
  ``docs/model_zoo_counts.json`` (a new or changed model is counted and
  added there);
* ``Results``: the paper's numbers for the model, copied from
  ``configs/paper_results.json`` with the table they come from;
* ``Weights``: the authors' released checkpoint where one exists, with the
  converter command that makes it loadable here (``Converted From``).

``--check`` counts nothing: it regenerates every file with the counts
already in the metafiles and fails if any differs, so the paper's numbers in
the metafiles cannot drift from ``paper_results.json``. ``--reuse-counts``
writes the files with those counts (after a change to the paper's numbers
only; a new or changed config needs counting).
"""
import argparse
import json
import logging
import sys
from pathlib import Path

import yaml
from mmengine.config import Config
from mmengine.logging import MMLogger

import mmacmix  # noqa: F401
from mmacmix.analysis.complexity import DEFAULT_SHAPES
from mmacmix.analysis.model_zoo import CountCache, count

REPO_ROOT = Path(__file__).resolve().parents[1]  # the checkout it updates
CONFIG_DIR = REPO_ROOT / 'configs'
METAFILE_DIR = CONFIG_DIR / 'metafiles'
MODEL_INDEX = REPO_ROOT / 'model-index.yml'
PAPER_RESULTS_FILE = CONFIG_DIR / 'paper_results.json'
MODEL_ZOO_COUNTS = REPO_ROOT / 'docs' / 'model_zoo_counts.json'
PAPER = dict(Title='On the Integration of Self-Attention and Convolution',
             URL='https://arxiv.org/abs/2111.14556')
OFFICIAL_CODE = 'https://github.com/LeapLabTHU/ACmix'
# backbone in the config names -> collection; the model index's order
FAMILIES = {
    'swin_acmix': dict(
        Name='Swin-ACmix',
        Architecture=['Swin Transformer', 'ACmix',
                      'Shifted Window Attention']),
    'pvt_acmix': dict(
        Name='PVT-ACmix',
        Architecture=['Pyramid Vision Transformer', 'ACmix',
                      'Spatial-Reduction Attention']),
    'resnet_acmix': dict(
        Name='ResNet-ACmix',
        Architecture=['ResNet', 'ACmix', 'Sliding-Window Attention']),
    'san_acmix': dict(
        Name='SAN-ACmix',
        Architecture=['SAN', 'ACmix', 'Patchwise Self-Attention']),
}
# scope -> (task, dataset) of the model's main result
SCOPES = {
    'mmpretrain': ('Image Classification', 'ImageNet-1k'),
    'mmseg': ('Semantic Segmentation', 'ADE20K'),
    'mmdet': ('Object Detection', 'COCO'),
}
# paper field -> (task, metric name); None: the model's main task
PAPER_FIELDS = {
    'top1': ('Image Classification', 'Top 1 Accuracy'),
    'mIoU': ('Semantic Segmentation', 'mIoU'),
    'params_m': (None, 'Params (M)'),
    'flops_g': (None, 'FLOPs (G)'),
    'fps': (None, 'FPS'),
}
# COCO fields by prefix (bbox_mAP -> box AP, segm_AP50 -> mask AP50, ...)
COCO_PREFIXES = {
    'bbox_': ('Object Detection', 'box '),
    'segm_': ('Instance Segmentation', 'mask '),
}
# fields of a paper row that are not numbers of the model
PAPER_TEXT = ('model', 'sources', 'note', 'table')
# the authors' released checkpoints (their README's 'Pretrained Models'):
# config -> (file name to save it as, Tsinghua Cloud, Google Drive)
OFFICIAL_WEIGHTS = {
    'swin_acmix_t_in1k': (
        'swin_acmix_t.pth',
        'https://cloud.tsinghua.edu.cn/f/210c89a6f9eb4bd0beb6/',
        'https://drive.google.com/file/d/'
        '1qJnYhtQ65rWd0zUuV9eZQW5Wxj-TiiSg/view?usp=sharing'),
    'swin_acmix_s_in1k': (
        'swin_acmix_s.pth',
        'https://cloud.tsinghua.edu.cn/f/8bed555e75c840f8a00d/',
        'https://drive.google.com/file/d/'
        '12PhN5YOEtWAgO8eSLhopfCVZ7JozMf9T/view?usp=sharing'),
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        '--check', action='store_true',
        help='count nothing; fail if a file is not what it would be written')
    mode.add_argument(
        '--reuse-counts', action='store_true',
        help='count nothing: take the counts from the metafiles as they are')
    parser.add_argument('--paper', default=str(PAPER_RESULTS_FILE),
                        help="the paper's numbers (JSON)")
    return parser.parse_args(argv)


def family_of(name):
    """The key of :data:`FAMILIES` whose backbone the config uses."""
    for key in FAMILIES:
        if key in name:
            return key
    raise ValueError(f'config {name} belongs to no family '
                     f'({", ".join(FAMILIES)})')


def paper_metric(field):
    """``(task or None, metric name)`` of a field of the paper's data."""
    if field in PAPER_FIELDS:
        return PAPER_FIELDS[field]
    for prefix, (task, label) in COCO_PREFIXES.items():
        if field.startswith(prefix):
            return task, label + field[len(prefix):].replace('mAP', 'AP')
    return None, field


def paper_results(entry, scope):
    """The ``Results`` of one model: the numbers of the paper's ACmix row
    ``entry['acmix']``, one result per task, the model's main task first;
    every number of the row is kept (an unknown field under its own
    name)."""
    row = entry.get('acmix', {})
    main_task, dataset = SCOPES[scope]
    by_task = {main_task: {}}
    for field, value in row.items():
        if field in PAPER_TEXT or isinstance(value, (str, list, dict)):
            continue
        task, metric = paper_metric(field)
        by_task.setdefault(task or main_task, {})[metric] = value
    table = row.get('table', entry.get('table'))
    results = []
    for task, metrics in by_task.items():
        if metrics:
            result = dict(Task=task, Dataset=dataset, Metrics=metrics)
            if table is not None:
                result['Paper Table'] = table
            results.append(result)
    return results


def model_entry(name, cfg, paper_entry, counts):
    """One model of a metafile."""
    scope = cfg.get('default_scope', 'mmdet')
    shape = counts.get('input_shape') or DEFAULT_SHAPES[scope]
    entry = {
        'Name': name,
        'In Collection': FAMILIES[family_of(name)]['Name'],
        'Config': f'configs/{name}.py',
        'Metadata': {
            'Training Data': SCOPES[scope][1],
            'Parameters': counts['params'],
            'FLOPs': counts['flops'],
            'Input Size': 'x'.join(map(str, shape)),
        },
        'Results': paper_results(paper_entry, scope),
    }
    if name in OFFICIAL_WEIGHTS:
        official, tsinghua, drive = OFFICIAL_WEIGHTS[name]
        entry['Weights'] = tsinghua
        entry['Converted From'] = {
            'Weights': drive,
            'Code': OFFICIAL_CODE,
            # the released file is in the official layout: convert it
            'Convert': 'python tools/model_converters/acmix_official.py '
                       f'{official} checkpoints/{name}.pth',
        }
    return entry


def collection(key):
    family = FAMILIES[key]
    return {
        'Name': family['Name'],
        'Metadata': {'Architecture': family['Architecture']},
        'Paper': PAPER,
        'Code': {'URL': f'mmacmix/models/backbones/{key}.py'},
        'README': 'docs/model_zoo.md',
    }


def dump(data) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True,
                          width=1000)


def read_metafile_counts():
    """``{config name: counts}`` of the metafiles as they are."""
    counts = {}
    for path in sorted(METAFILE_DIR.glob('*.yml')):
        for model in yaml.safe_load(path.read_text()).get('Models', []):
            meta = model['Metadata']
            counts[model['Name']] = dict(
                params=meta['Parameters'], flops=meta['FLOPs'],
                input_shape=[int(s) for s in meta['Input Size'].split('x')])
    return counts


def render(args):
    """``{path: text}`` of every file of the model index."""
    with open(args.paper) as f:
        paper = json.load(f)['models']
    reuse = args.check or args.reuse_counts
    if reuse:
        known = read_metafile_counts()
    else:
        cache = CountCache(str(MODEL_ZOO_COUNTS))
    families = {key: [] for key in FAMILIES}
    for path in sorted(CONFIG_DIR.glob('*.py')):
        name = path.stem
        cfg = Config.fromfile(path)
        if reuse:
            if name not in known:
                raise ValueError(f'{name} has no entry in the metafiles; '
                                 'run .dev_scripts/make_metafiles.py')
            counts = known[name]
        else:
            scope = cfg.get('default_scope', 'mmdet')
            counts = count(cfg, name, DEFAULT_SHAPES[scope], cache,
                           '', True)
        families[family_of(name)].append(
            model_entry(name, cfg, paper.get(name, {}), counts))
    files = {}
    imports = []
    for key, models in families.items():
        if not models:
            continue
        path = METAFILE_DIR / f'{key}.yml'
        files[path] = dump(dict(Collections=[collection(key)],
                                Models=models))
        imports.append(str(path.relative_to(REPO_ROOT)))
    files[MODEL_INDEX] = dump(dict(Import=imports))
    return files


def main(argv=None):
    args = parse_args(argv)
    MMLogger.get_current_instance().setLevel(logging.WARNING)
    files = render(args)
    stale = [p for p in sorted(METAFILE_DIR.glob('*.yml')) if p not in files]
    if args.check:
        changed = [p for p, text in files.items()
                   if not p.is_file() or p.read_text() != text] + stale
        if changed:
            raise ValueError(
                'out of date: ' + ', '.join(
                    str(p.relative_to(REPO_ROOT)) for p in changed)
                + '; run python .dev_scripts/make_metafiles.py (with '
                '--reuse-counts if only the paper\'s numbers changed)')
        print(f'{len(files)} files up to date')
        return
    METAFILE_DIR.mkdir(exist_ok=True)
    for path in stale:
        path.unlink()
    for path, text in files.items():
        path.write_text(text)
        print(f'wrote {path.relative_to(REPO_ROOT)}')


if __name__ == '__main__':
    try:
        main()
    except (ValueError, FileNotFoundError) as err:
        sys.exit(f'error: {err}')
