"""The model-zoo table: each config's parameters, FLOPs and metrics beside
the ACmix paper's baseline and ACmix rows (``configs/paper_results.json``).

What ``tools/analysis_tools/paper_table.py`` prints, ``docs/model_zoo.md``
holds
and ``tools/reproduce.py`` collects its runs into: one implementation.

Every number column comes in four cells: the paper's baseline, the paper's
ACmix, ours (counted here or read from the work dirs) and ours minus the
paper's ACmix. A paper cell the table has but the text extraction lost says
``lost``; one the paper does not give says ``—``.
"""
import csv
import hashlib
import importlib.metadata
import json
import os.path as osp
import re
import sys
import time
from pathlib import Path

from mmengine.config import Config
from mmengine.hub import get_config

from ..utils.package_files import config_dir
from .complexity import DEFAULT_SHAPES, measure
from .logs import NoLogsError, last_values, load_runs

SUMMARY_START = '<!-- model-zoo-summary:start -->'
SUMMARY_END = '<!-- model-zoo-summary:end -->'
# paper field -> (key mmengine logs, factor to percent, column label)
METRICS = {
    'top1': ('accuracy/top1', 1, 'top-1'),
    'mIoU': ('mIoU', 1, 'mIoU'),
    'bbox_mAP': ('coco/bbox_mAP', 100, 'box AP'),
    'bbox_AP50': ('coco/bbox_mAP_50', 100, 'box AP50'),
    'bbox_AP75': ('coco/bbox_mAP_75', 100, 'box AP75'),
    'segm_mAP': ('coco/segm_mAP', 100, 'mask AP'),
}
# complexity field -> (column label, cell format)
COUNTS = {'params_m': ('params (M)', '{:.2f}'),
          'flops_g': ('FLOPs (G)', '{:.2f}')}
TASKS = {  # scope -> task, for configs without a paper entry
    'mmpretrain': 'ImageNet-1K classification',
    'mmseg': 'ADE20K semantic segmentation',
    'mmdet': 'COCO object detection',
}
LIBRARIES = ('torch', 'mmengine', 'mmcv', 'mmdet', 'mmsegmentation',
             'mmpretrain')
# configs without a paper entry -> the stock config they change (only the
# backbone), counted beside them
STOCK_BASELINES = {
    'retinanet_resnet_acmix_r50s34_1x_coco':
    'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py',
    'deeplabv3plus_resnet_acmix_50_80k_ade20k':
    'mmseg::deeplabv3plus/deeplabv3plus_r50-d8_4xb4-80k_ade20k-512x512.py',
    'pspnet_resnet_acmix_50_80k_ade20k':
    'mmseg::pspnet/pspnet_r50-d8_4xb4-80k_ade20k-512x512.py',
}


def paper_results_path() -> Path:
    """``configs/paper_results.json`` of the installed configs."""
    return config_dir() / 'paper_results.json'


def load_paper(path=None) -> dict:
    with open(path or paper_results_path()) as f:
        return json.load(f)


def stock_configs() -> dict:
    """``{name: path}`` of ``configs/*.py`` (toy and ``_base_`` left
    out)."""
    return {p.stem: p for p in sorted(config_dir().glob('*.py'))}


def code_fingerprint() -> str:
    """What the counts depend on besides the model config: mmacmix's source
    code and the library versions."""
    import mmacmix
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
    """Counts by config name, valid while their key matches."""

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
                json.dump(self.entries, f, indent=1, sort_keys=True)
                f.write('\n')


def count(cfg, name, shape, cache, fingerprint, allow_measure):
    """Parameters, FLOPs and input size of ``cfg`` at ``shape``, from the
    cache or counted; None if neither is allowed.

    The cache key is the model's config, the input size and
    ``fingerprint`` (the code, or nothing for the committed counts of
    docs/model_zoo.md), so a change of schedule counts nothing again.
    """
    if 'pad_size_divisor' in cfg.model.get('data_preprocessor', {}):
        # the paper counts the exact input size (mmdet 2.x's counter feeds an
        # unpadded tensor); padding 800x1333 to 800x1344 adds ~1.6%
        cfg.model.data_preprocessor.pad_size_divisor = 1
    key = hashlib.sha256(json.dumps(
        [cfg.to_dict()['model'], list(shape), fingerprint], sort_keys=True,
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
    """The metric fields that ``cfg``'s evaluator logs."""
    if scope == 'mmpretrain':
        return ['top1']
    if scope == 'mmseg':
        return ['mIoU']
    evaluators = cfg.get('val_evaluator') or []
    evaluators = evaluators if isinstance(evaluators, list) else [evaluators]
    kinds = set()
    for evaluator in evaluators:
        metric = evaluator.get('metric', 'bbox')
        kinds.update([metric] if isinstance(metric, str) else metric)
    fields = ['bbox_mAP', 'bbox_AP50', 'bbox_AP75'] * ('bbox' in kinds)
    return fields + ['segm_mAP'] * ('segm' in kinds)


def read_metrics(work_dirs, name, metrics):
    """``(values, 'work dir (run)')`` of the newest evaluation of config
    ``name`` logged in ``work_dirs``: in ``WORK_DIRS/<name>/`` or in any
    work dir holding a copy of the config (``WORK_DIRS/*/<name>.py``, which
    the runner writes); ``({}, None)`` if there is none."""
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


def paper_cell(paper_row, field):
    """A number of one paper row, ``'lost'``, or None (not given)."""
    if paper_row is None:
        return None
    if field in paper_row.get('lost', []):
        return 'lost'
    return paper_row.get(field)


def build_rows(paper, configs, work_dirs, cache=None, fingerprint='',
               allow_measure=False, shape=None):
    """One row per config (``{name: path or None}``, None: a paper entry
    without a config here), with every number of the four-cell columns as
    ``paper_baseline_<f>``, ``paper_acmix_<f>``, ``<f>`` and ``delta_<f>``.

    Args:
        paper (dict): the data of ``configs/paper_results.json``.
        configs (dict): the configs to show.
        work_dirs (str): the folder of the work dirs to read metrics from.
        cache (CountCache, optional): parameter and FLOP counts.
        fingerprint (str): part of the count cache's key.
        allow_measure (bool): count what the cache lacks (slow).
        shape (tuple, optional): input size instead of the paper's.
    """
    cache = cache or CountCache(None)
    rows = []
    for name, path in configs.items():
        entry = paper['models'].get(name, {})
        acmix, base = entry.get('acmix'), entry.get('baseline')
        metrics = list(entry.get('metrics', []))
        row = dict(config=name, model=acmix and acmix['model'],
                   baseline=base and base['model'], task=entry.get('task'),
                   table=acmix and acmix['table'], in_paper=bool(entry),
                   has_config=path is not None, measured=False, log=None,
                   sources=list(dict.fromkeys(
                       s for r in (acmix, base) if r for s in r['sources'])),
                   notes=[f'{r["model"]}: {r["note"]}' for r in (acmix, base)
                          if r and r.get('note')],
                   others=entry.get('others', []))
        values = {}
        if path is not None:
            cfg = Config.fromfile(path)
            scope = cfg.get('default_scope', 'mmdet')
            row['task'] = row['task'] or TASKS[scope]
            logged = evaluator_metrics(cfg, scope)
            metrics = [m for m in METRICS if m in metrics or m in logged]
            counts = count(cfg, name, tuple(shape or DEFAULT_SHAPES[scope]),
                           cache, fingerprint, allow_measure)
            if counts:
                row.update(input='x'.join(map(str, counts['input_shape'])),
                           measured=True)
                values.update(params_m=counts['params'] / 1e6,
                              flops_g=counts['flops'] / 1e9)
            found, row['log'] = read_metrics(work_dirs, name, metrics)
            values.update(found)
            row.update(_stock_counts(name, tuple(shape or DEFAULT_SHAPES[
                scope]), cache, fingerprint, allow_measure))
        row['metrics'] = metrics
        for field in [*COUNTS, *metrics, 'fps']:
            theirs = paper_cell(acmix, field)
            row[f'paper_baseline_{field}'] = paper_cell(base, field)
            row[f'paper_acmix_{field}'] = theirs
            if field == 'fps':
                continue
            row[field] = values.get(field)
            both = isinstance(theirs, (int, float)) and \
                row[field] is not None
            row[f'delta_{field}'] = round(row[field] - theirs, 4) if both \
                else None
        rows.append(row)
    # tasks in a fixed order, each keeping the configs' order
    order = list(TASKS.values())
    rows.sort(key=lambda r: order.index(r['task']) if r['task'] in order
              else len(order))
    return rows


def _stock_counts(name, shape, cache, fingerprint, allow_measure):
    """``stock_config``, ``stock_params_m`` and ``stock_flops_g`` of the
    stock config that ``name`` changes (None without one or its counts)."""
    stock = STOCK_BASELINES.get(name)
    counts = stock and count(get_config(stock), stock, shape, cache,
                             fingerprint, allow_measure)
    return dict(stock_config=stock,
                stock_params_m=counts and counts['params'] / 1e6,
                stock_flops_g=counts and counts['flops'] / 1e9)


def _label(field):
    return COUNTS[field][0] if field in COUNTS else METRICS[field][2]


def _paper_text(value):
    return '—' if value is None else str(value)


def _ours_text(row, field, fmt):
    """A measured or logged cell, or why it is empty."""
    if not row['has_config']:
        return 'no config'
    if field in COUNTS and not row['measured']:
        return 'not measured'
    value = row.get(field)
    return 'not run' if value is None else fmt.format(value)


def _delta_text(row, field, fmt):
    delta = row.get(f'delta_{field}')
    return '' if delta is None else fmt.replace('{:', '{:+').format(delta)


def _cells(row, field, fmt):
    """The four cells of one number column."""
    return [_paper_text(row[f'paper_baseline_{field}']),
            _paper_text(row[f'paper_acmix_{field}']),
            _ours_text(row, field, fmt), _delta_text(row, field, fmt)]


def _table(head, lines):
    return ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)] + [
        '| ' + ' | '.join(cells) + ' |' for cells in lines]


def markdown(rows, paper, heading='####', with_paper_only=True):
    """The rows as Markdown: a table per task, the paper rows without a
    config (``paper_only``, unless ``with_paper_only`` is False), then the
    sources and notes."""
    lines = []
    for task in dict.fromkeys(r['task'] for r in rows):
        group = [r for r in rows if r['task'] == task]
        metrics = [m for m in METRICS if any(m in r['metrics'] for r in group)]
        with_fps = any(r[f'paper_{kind}_fps'] is not None for r in group
                       for kind in ('acmix', 'baseline'))
        head = ['config', 'paper row (ACmix / baseline)', 'table', 'input']
        for label in [c[0] for c in COUNTS.values()] + [
                METRICS[m][2] for m in metrics]:
            head += [f'{label} base', f'{label} ACmix', f'{label} ours',
                     f'{label} Δ']
        head += ['FPS base', 'FPS ACmix'] * with_fps
        body = []
        for row in group:
            model = ' / '.join(m for m in (row['model'], row['baseline'])
                               if m) or 'no paper entry'
            cells = [f'`{row["config"]}`', model, row['table'] or '—',
                     row.get('input') or '—']
            for field, (_, fmt) in COUNTS.items():
                cells += _cells(row, field, fmt)
            for metric in metrics:
                cells += (_cells(row, metric, '{:.1f}') if metric in
                          row['metrics'] else ['n/a'] * 4)
            if with_fps:
                cells += [_paper_text(row['paper_baseline_fps']),
                          _paper_text(row['paper_acmix_fps'])]
            body.append(cells)
        lines += ['', f'{heading} {task}', ''] + _table(head, body)
        for row in group:
            if row.get('stock_params_m') is not None:
                lines += ['', f'`{row["config"]}` changes only the backbone '
                          f'of `{row["stock_config"]}`, counted the same '
                          'way: params (M) '
                          f'{row["stock_params_m"]:.2f}, FLOPs (G) '
                          f'{row["stock_flops_g"]:.2f}.']
            for other in row['others']:
                numbers = ', '.join(f'{_label(f)} {other[f]}'
                                    for f in [*COUNTS, *METRICS]
                                    if f in other)
                lines += ['', f'{other["table"]} also lists '
                          f'{other["model"]} beside `{row["config"]}`: '
                          f'{numbers}.']
        logs = [f'`{r["config"]}`: {r["log"]}' for r in group if r['log']]
        if logs:
            lines += ['', 'Metrics read from ' + '; '.join(logs) + '.']
    used = dict.fromkeys(s for r in rows for s in r['sources'])
    if with_paper_only:
        lines += _paper_only(paper, heading)
        used.update(dict.fromkeys(
            s for e in paper.get('paper_only', {}).values()
            for r in e['rows'] for s in r['sources']))
    notes = [f'`{r["config"]}`, {n}' for r in rows for n in r['notes']]
    lines += ['', 'Sources:', '']
    lines += [f'- **{key}**: {paper["sources"][key]}'
              for key in ['paper', *used] if key in paper['sources']]
    lines += ['', 'Notes:', ''] * bool(notes) + [f'- {n}' for n in notes]
    return '\n'.join(lines).lstrip('\n')


def _paper_only(paper, heading):
    """The paper's rows without a config here (the ablations)."""
    lines = []
    for entry in paper.get('paper_only', {}).values():
        fields = [f for f in [*COUNTS, *METRICS, 'fps']
                  if any(f in r or f in r.get('lost', [])
                         for r in entry['rows'])]
        head = ['paper row', 'table'] + [
            'FPS' if f == 'fps' else _label(f) for f in fields]
        body = [[r['model'], r['table']] + [
            _paper_text(paper_cell(r, f)) for f in fields]
            for r in entry['rows']]
        lines += ['', f'{heading} {entry["task"]} '
                  f'({entry["rows"][0]["table"]}, no config here)', '']
        lines += _table(head, body)
    return lines


def summary(rows):
    """The short table between the README's model-zoo markers: each
    config's paper row and main metric, baseline to ACmix, and ours."""
    head = ['config', 'paper row', 'table', 'paper: baseline → ACmix',
            'ours']
    body = []
    for row in rows:
        if not row['in_paper']:
            continue
        metric = next((m for m in row['metrics']
                       if row[f'paper_acmix_{m}'] is not None or
                       row[f'paper_baseline_{m}'] is not None), None)
        field = metric or 'flops_g'
        label = _label(field)
        theirs = (f'{label} {_paper_text(row[f"paper_baseline_{field}"])} → '
                  f'{_paper_text(row[f"paper_acmix_{field}"])}')
        fmt = '{:.2f}' if field in COUNTS else '{:.1f}'
        body.append([f'`{row["config"]}`', row['model'], row['table'],
                     theirs, _ours_text(row, field, fmt)])
    return '\n'.join(_table(head, body))


def zoo_page(rows, paper):
    """docs/model_zoo.md, whole."""
    return '\n'.join([
        '# Model zoo: the paper beside ours',
        '',
        '<!-- Generated by `python tools/analysis_tools/paper_table.py '
        '--write-docs` from configs/paper_results.json and the counts in '
        'docs/model_zoo_counts.json: do not edit. -->',
        '',
        'Every config in `configs/` (toy configs left out) beside the ACmix '
        "paper's rows. Each number comes in four columns: the paper's "
        "baseline (*base*), the paper's ACmix row, *ours* and ours minus "
        "the paper's ACmix (*Δ*). Params and FLOPs (multiply-adds) are "
        'counted here by `tools/analysis_tools/get_flops.py`\'s counter '
        'at the '
        "paper's input size exactly (224×224, 512×2048 ADE20K, 800×1333 "
        'COCO, detectors not padded); metrics are those of the runs in '
        '`work_dirs/` when the page was written (' + (
            'listed under each table' if any(r['log'] for r in rows) else
            'none: no run on the real datasets had been made') +
        '; see [reproduce.md](reproduce.md)). *lost*: the '
        "paper's table has the cell but its text extraction lost the number "
        "(never filled by guess); *—*: the paper gives no such number.",
        '',
        markdown(rows, paper, heading='##'),
        ''])


def replace_between_markers(text, body):
    """``text`` with what lies between the model-zoo summary markers
    replaced by ``body``; ``text`` unchanged if it has no markers."""
    pattern = re.compile(re.escape(SUMMARY_START) + '.*?' +
                         re.escape(SUMMARY_END), re.S)
    return pattern.sub(
        lambda _: f'{SUMMARY_START}\n{body}\n{SUMMARY_END}', text, count=1)


def flat(row):
    """A row for CSV/JSON: numbers, ``'lost'`` or None; lists joined."""
    return {k: ' '.join(v) if isinstance(v, list) and all(
        isinstance(x, str) for x in v) else v
        for k, v in row.items() if k != 'others'}


def write_records(rows, json_path=None, csv_path=None):
    """The rows as JSON and/or CSV files."""
    records = [flat(row) for row in rows]
    if json_path:
        with open(json_path, 'w') as f:
            json.dump(records, f, indent=2)
    if csv_path:
        fields = list(dict.fromkeys(k for r in records for k in r))
        with open(csv_path, 'w', newline='') as f:
            writer = csv.DictWriter(f, fields)
            writer.writeheader()
            writer.writerows(records)
    return records
