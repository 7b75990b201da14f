"""Reading the scalars that mmengine's runner logs in a work dir.

Every ``Runner`` run writes into ``WORK_DIR/<timestamp>/``
(``YYYYMMDD_HHMMSS``):

* ``vis_data/scalars.json`` (``LocalVisBackend``, on in the OpenMMLab default
  runtimes every config here inherits): one JSON object per line, the
  training logs (``loss``, ``lr``, ..., with ``iter`` and ``step``) and the
  validation metrics (``coco/bbox_mAP``, ``mIoU``, ``accuracy/top1``, ...,
  with ``step``, the epoch or iteration they were taken at);
* ``<timestamp>.json`` for a test run (``tools/test.py``): its metrics, one
  object without a step.

A resumed training is a new timestamped run that continues the iteration
count.
"""
import json
import re
from pathlib import Path
from typing import Dict, Iterable, List, Tuple

_RUN_NAME = re.compile(r'^\d{8}_\d{6}$')


class NoLogsError(FileNotFoundError):
    """A work dir without any mmengine scalar logs."""


def _read_json_lines(path: Path) -> List[dict]:
    records = []
    for line in path.read_text().splitlines():
        if line.strip():
            records.append(json.loads(line))
    return records


def read_run(run_dir: Path) -> List[dict]:
    """The logged records of one timestamped run, in the order they were
    written (training and validation, then a test run's metrics)."""
    run_dir = Path(run_dir)
    records = []
    scalars = run_dir / 'vis_data' / 'scalars.json'
    if scalars.is_file():
        records += _read_json_lines(scalars)
    test_metrics = run_dir / f'{run_dir.name}.json'
    if test_metrics.is_file():
        records += _read_json_lines(test_metrics)
    return records


def load_runs(work_dir) -> List[Tuple[str, List[dict]]]:
    """``(timestamp, records)`` of every run in ``work_dir`` that logged
    anything, oldest first.

    Raises:
        NoLogsError: ``work_dir`` does not exist or holds no logged run.
    """
    work_dir = Path(work_dir)
    if not work_dir.is_dir():
        raise NoLogsError(f'work dir {work_dir} does not exist')
    runs = []
    for run_dir in sorted(work_dir.iterdir()):
        if run_dir.is_dir() and _RUN_NAME.match(run_dir.name):
            records = read_run(run_dir)
            if records:
                runs.append((run_dir.name, records))
    if not runs:
        raise NoLogsError(
            f'no mmengine logs in {work_dir} (expected <timestamp>/vis_data/'
            'scalars.json or <timestamp>/<timestamp>.json)')
    return runs


def last_values(runs: Iterable[Tuple[str, List[dict]]],
                keys: Iterable[str]) -> Dict[str, Tuple[float, str]]:
    """The last logged value of each of ``keys`` over ``runs`` (in their
    order), as ``{key: (value, timestamp)}``; keys never logged are left
    out."""
    found = {}
    for timestamp, records in runs:
        for record in records:
            for key in keys:
                if key in record:
                    found[key] = (record[key], timestamp)
    return found


def series(records: List[dict], key: str) -> Tuple[str, List[tuple]]:
    """``(x name, [(x, value), ...])`` of ``key`` over ``records``.

    Training scalars are placed at their global iteration (``iter``);
    validation metrics at their ``step``, which is the epoch in epoch-based
    training and the iteration otherwise. A key logged by both (``time``)
    follows the training. A test run's metrics have no step and are left
    out.
    """
    train = [(r['iter'], r[key]) for r in records if 'iter' in r and key in r]
    if train:
        return 'iter', train
    by_epoch = any('epoch' in r for r in records if 'iter' in r)
    return ('epoch' if by_epoch else 'iter',
            [(r['step'], r[key]) for r in records
             if 'step' in r and 'iter' not in r and key in r])
