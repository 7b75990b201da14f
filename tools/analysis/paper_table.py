"""The model-zoo table: every config's measured parameters and FLOPs beside
the ACmix paper's, and the mAP / mIoU / top-1 of any runs in the work dirs.

Usage: python tools/analysis/paper_table.py [--configs PATTERN ...]
           [--work-dirs DIR] [--no-measure] [--cache FILE | --no-cache]
           [--shape H W] [--paper FILE] [--csv OUT] [--json OUT]

Prints markdown, one table per task. The configs are ``configs/*.py`` (the
toy configs and ``_base_`` are left out); ``--configs`` narrows them to
names matching glob patterns or substrings, or names config files anywhere.
The paper's numbers come from ``configs/paper_results.json``, where every
row names its sources; paper rows without a config here are listed too.

Parameters and FLOPs (multiply-adds) are counted as
``tools/analysis/get_flops.py`` counts them, at the paper's input size
exactly (800x1333 COCO, 512x2048 ADE20K, 224x224 ImageNet): detectors are
not padded to their size divisor, as in the mmdet 2.x counter behind the
paper's numbers. Counting a full-size detector takes 10-60 s on a CPU, so
the counts are cached (default ``WORK_DIRS/paper_table_cache.json``), keyed
by the resolved config, the input size, mmacmix's source code and the
library versions; ``--no-measure`` prints the cached counts only.

Metrics are the last evaluation logged by mmengine in
``WORK_DIRS/<config name>/`` or in any work dir holding a copy of the
config (``WORK_DIRS/*/<config name>.py``, which the runner writes), the
most recent of them: ``coco/bbox_mAP`` and ``coco/segm_mAP`` (shown in
percent), ``mIoU``, ``accuracy/top1``.
"""
import argparse
import csv
import fnmatch
import hashlib
import importlib.metadata
import json
import logging
import os.path as osp
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))
# isort: off
import mmacmix  # noqa: E402  (before anything imports torchvision)
from mmengine.config import Config  # noqa: E402
from mmengine.logging import MMLogger  # noqa: E402

from mmacmix.utils.config_complexity import DEFAULT_SHAPES, measure  # noqa
from mmacmix.utils.logs import NoLogsError, last_values, load_runs  # noqa
# isort: on

CONFIG_DIR = REPO_ROOT / 'configs'
PAPER_RESULTS = CONFIG_DIR / 'paper_results.json'
# paper field -> (key mmengine logs, factor to percent, column label)
METRICS = {
    'top1': ('accuracy/top1', 1, 'top-1'),
    'mIoU': ('mIoU', 1, 'mIoU'),
    'bbox_mAP': ('coco/bbox_mAP', 100, 'box AP'),
    'segm_mAP': ('coco/segm_mAP', 100, 'mask AP'),
}
TASKS = {  # scope -> task and metrics, for configs without a paper row
    'mmpretrain': ('ImageNet-1K classification', ['top1']),
    'mmseg': ('ADE20K semantic segmentation', ['mIoU']),
    'mmdet': ('COCO object detection', ['bbox_mAP', 'segm_mAP']),
}
LIBRARIES = ('torch', 'mmengine', 'mmcv', 'mmdet', 'mmsegmentation',
             'mmpretrain')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        '--configs', nargs='+', metavar='PATTERN',
        help='config names (glob patterns or substrings, e.g. "retinanet_*" '
        'or "swin") among configs/*.py, or paths to config files')
    parser.add_argument('--work-dirs', default='work_dirs',
                        help='folder of the work dirs to read metrics from')
    parser.add_argument('--no-measure', action='store_true',
                        help='count nothing; show cached counts only')
    parser.add_argument('--cache', help='count cache (default: '
                        'WORK_DIRS/paper_table_cache.json)')
    parser.add_argument('--no-cache', action='store_true',
                        help='neither read nor write the count cache')
    parser.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'),
                        help="input size instead of the paper's")
    parser.add_argument('--paper', default=str(PAPER_RESULTS),
                        help="the paper's numbers (JSON)")
    parser.add_argument('--csv', help='also write the rows as CSV')
    parser.add_argument('--json', help='also write the rows as JSON')
    return parser.parse_args(argv)


def select_configs(patterns, paper_names):
    """``{name: path or None}``: the configs to show (None: a paper row
    without a config here)."""
    stock = {p.stem: p for p in sorted(CONFIG_DIR.glob('*.py'))}
    known = {**{name: None for name in paper_names}, **stock}
    if not patterns:
        return known
    selected = {}
    for pattern in patterns:
        if pattern.endswith('.py') and osp.isfile(pattern):
            selected[Path(pattern).stem] = Path(pattern)
            continue
        glob = pattern if any(c in pattern for c in '*?[') else \
            f'*{pattern}*'
        names = fnmatch.filter(known, glob)
        if not names:
            raise ValueError(f'no config matches {pattern!r} (configs: '
                             f'{", ".join(stock)})')
        selected.update((name, known[name]) for name in names)
    return selected


def code_fingerprint() -> str:
    """What the counts depend on besides the config: mmacmix's source code
    and the library versions."""
    digest = hashlib.sha256()
    package = Path(mmacmix.__file__).parent
    for path in sorted(package.rglob('*.py')):
        digest.update(str(path.relative_to(package)).encode())
        digest.update(path.read_bytes())
    for lib in LIBRARIES:
        try:
            digest.update(f'{lib}={importlib.metadata.version(lib)}'.encode())
        except importlib.metadata.PackageNotFoundError:
            digest.update(f'{lib}=none'.encode())
    return digest.hexdigest()


class CountCache:
    """Counts by config path, valid while their key matches."""

    def __init__(self, path):
        self.path = path
        self.entries = {}
        if path and osp.isfile(path):
            with open(path) as f:
                self.entries = json.load(f)

    def get(self, name, key):
        entry = self.entries.get(name)
        return entry if entry and entry['key'] == key else None

    def put(self, name, key, counts):
        self.entries[name] = dict(key=key, **counts)
        if self.path:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, 'w') as f:
                json.dump(self.entries, f, indent=1)


def count(cfg, name, shape, cache, fingerprint, allow_measure):
    """Parameters, FLOPs and input size of ``cfg`` at the paper's size, from
    the cache or counted; None if neither is allowed."""
    if 'pad_size_divisor' in cfg.model.get('data_preprocessor', {}):
        # the paper counts the exact input size (mmdet 2.x's counter feeds an
        # unpadded tensor); padding 800x1333 to 800x1344 adds ~1.6%
        cfg.model.data_preprocessor.pad_size_divisor = 1
    key = hashlib.sha256(json.dumps(
        [cfg.to_dict(), shape, fingerprint], sort_keys=True,
        default=str).encode()).hexdigest()
    cached = cache.get(name, key)
    if cached or not allow_measure:
        return cached
    print(f'counting {name} ...', file=sys.stderr, flush=True)
    start = time.perf_counter()
    result = measure(cfg, shape)
    counts = dict(params=result['params'], flops=result['flops'],
                  input_shape=list(result['input_shape']))
    print(f'  {time.perf_counter() - start:.0f} s', file=sys.stderr)
    cache.put(name, key, counts)
    return counts


def evaluator_metrics(cfg, scope):
    """The paper metric fields that ``cfg``'s evaluator reports."""
    if scope != 'mmdet':
        return TASKS[scope][1]
    evaluators = cfg.get('val_evaluator') or []
    evaluators = evaluators if isinstance(evaluators, list) else [evaluators]
    kinds = set()
    for evaluator in evaluators:
        metric = evaluator.get('metric', 'bbox')
        kinds.update([metric] if isinstance(metric, str) else metric)
    return [f'{kind}_mAP' for kind in ('bbox', 'segm') if kind in kinds]


def read_metrics(work_dirs, name, metrics):
    """``(values, 'work dir (run)')`` of the newest evaluation of config
    ``name`` logged in ``work_dirs``; ``({}, None)`` if there is none."""
    root = Path(work_dirs)
    if not root.is_dir():
        return {}, None
    candidates = [d for d in sorted(root.iterdir()) if d.is_dir() and (
        d.name == name or (d / f'{name}.py').is_file())]
    logged_keys = [METRICS[m][0] for m in metrics]
    best, best_run = {}, None
    for work_dir in candidates:
        try:
            found = last_values(load_runs(work_dir), logged_keys)
        except NoLogsError:
            continue
        if not found:
            continue
        newest = max(timestamp for _, timestamp in found.values())
        if best_run is None or newest > best_run[0]:
            best = {m: round(found[METRICS[m][0]][0] * METRICS[m][1], 4)
                    for m in metrics if METRICS[m][0] in found}
            best_run = (newest, f'{work_dir} ({newest})')
    return best, best_run and best_run[1]


def paper_fields(paper_row, metrics):
    """The paper's numbers in one row of the data file, as ``paper_*``
    fields (None where no source gives them)."""
    return {f'paper_{field}': paper_row.get(field)
            for field in ['params_m', 'flops_g', 'fps', *metrics]}


def build_rows(args):
    with open(args.paper) as f:
        paper = json.load(f)
    configs = select_configs(args.configs, paper['models'])
    cache = CountCache(None if args.no_cache else (
        args.cache or osp.join(args.work_dirs, 'paper_table_cache.json')))
    fingerprint = code_fingerprint()
    rows = []
    for name, path in configs.items():
        entry = paper['models'].get(name, {})
        acmix = entry.get('acmix', {})
        row = dict(config=name, row='acmix', model=acmix.get('model'),
                   task=entry.get('task'), metrics=entry.get('metrics', []),
                   in_paper=bool(entry), has_config=path is not None,
                   sources=acmix.get('sources', []), note=acmix.get('note'))
        if path is not None:
            cfg = Config.fromfile(path)
            scope = cfg.get('default_scope', 'mmdet')
            row['task'] = row['task'] or TASKS[scope][0]
            row['metrics'] = evaluator_metrics(cfg, scope)
            shape = tuple(args.shape or DEFAULT_SHAPES[scope])
            counts = count(cfg, name, shape, cache, fingerprint,
                           not args.no_measure)
            if counts:
                row.update(input='x'.join(map(str, counts['input_shape'])),
                           params_m=counts['params'] / 1e6,
                           flops_g=counts['flops'] / 1e9)
            values, run = read_metrics(args.work_dirs, name, row['metrics'])
            row.update(measured=counts is not None, log=run, **values)
        row.update(paper_fields(acmix, row['metrics']))
        rows.append(row)
        if 'baseline' in entry:
            base = entry['baseline']
            rows.append(dict(
                config=name, row='baseline', model=base['model'],
                task=row['task'], metrics=row['metrics'], in_paper=True,
                has_config=False, sources=base['sources'],
                note=base.get('note'),
                **paper_fields(base, row['metrics'])))
    # tasks in a fixed order, each keeping the configs' order
    order = [task for task, _ in TASKS.values()]
    rows.sort(key=lambda r: order.index(r['task']) if r['task'] in order
              else len(order))
    return rows, paper['sources']


def ours(row, field, fmt):
    """A measured or logged cell, or why it is empty."""
    if row['row'] == 'baseline':
        return '—'
    if not row['has_config']:
        return 'no config'
    if field in ('params_m', 'flops_g') and not row['measured']:
        return 'not measured'
    value = row.get(field)
    return 'not run' if value is None else fmt.format(value)


def theirs(row, field):
    """A paper cell, or why it is empty."""
    if not row['in_paper']:
        return 'no paper entry'
    value = row.get(f'paper_{field}')
    return 'not sourced' if value is None else str(value)


def markdown(rows, sources):
    lines = []
    for task in dict.fromkeys(r['task'] for r in rows):
        group = [r for r in rows if r['task'] == task]
        metrics = [m for m in METRICS if any(m in r['metrics'] for r in group)]
        with_fps = any(r.get('paper_fps') is not None for r in group)
        head = ['config', 'model (paper)', 'input', 'params (M)',
                'params paper', 'FLOPs (G)', 'FLOPs paper']
        for metric in metrics:
            label = METRICS[metric][2]
            head += [label, f'{label} paper']
        head += ['FPS paper'] * with_fps + ['sources']
        lines += ['', f'#### {task}', '', '| ' + ' | '.join(head) + ' |',
                  '|' + '---|' * len(head)]
        for row in group:
            first = (f'`{row["config"]}`' if row['row'] == 'acmix' else
                     '↳ baseline')
            cells = [first, row['model'] or '—', row.get('input') or '—',
                     ours(row, 'params_m', '{:.2f}'),
                     theirs(row, 'params_m'),
                     ours(row, 'flops_g', '{:.2f}'), theirs(row, 'flops_g')]
            for metric in metrics:
                if metric in row['metrics']:
                    cells += [ours(row, metric, '{:.1f}'),
                              theirs(row, metric)]
                else:
                    cells += ['n/a', 'n/a']
            if with_fps:
                fps = row.get('paper_fps')
                cells.append('—' if fps is None else str(fps))
            cells.append(', '.join(row['sources']) or '—')
            lines.append('| ' + ' | '.join(cells) + ' |')
        logs = [f'`{r["config"]}`: {r["log"]}' for r in group
                if r.get('log')]
        if logs:
            lines += ['', 'Metrics read from ' + '; '.join(logs) + '.']
    used = dict.fromkeys(s for r in rows for s in r['sources'])
    notes = [f'`{r["config"]}` ({r["row"]}): {r["note"]}' for r in rows
             if r.get('note')]
    lines += ['', 'Sources:', '']
    lines += [f'- **{key}**: {sources[key]}' for key in used]
    lines += ['', 'Notes:', ''] * bool(notes) + [f'- {n}' for n in notes]
    return '\n'.join(lines).lstrip('\n')


def flat(row):
    """A row for CSV/JSON: numbers or None, sources joined."""
    out = {k: v for k, v in row.items() if k not in ('metrics', 'sources')}
    out['metrics'] = ' '.join(row['metrics'])
    out['sources'] = ' '.join(row['sources'])
    return out


def main(argv=None):
    args = parse_args(argv)
    # mmengine's INFO messages go to stdout, into the table
    MMLogger.get_current_instance().setLevel(logging.WARNING)
    rows, sources = build_rows(args)
    print(markdown(rows, sources))
    records = [flat(row) for row in rows]
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(records, f, indent=2)
    if args.csv:
        fields = list(dict.fromkeys(k for r in records for k in r))
        with open(args.csv, 'w', newline='') as f:
            writer = csv.DictWriter(f, fields)
            writer.writeheader()
            writer.writerows(records)
    return records


if __name__ == '__main__':
    try:
        main()
    except (ValueError, FileNotFoundError) as err:
        sys.exit(f'error: {err}')
