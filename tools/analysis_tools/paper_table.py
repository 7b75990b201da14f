"""The model-zoo table: every config's parameters, FLOPs and metrics beside
the ACmix paper's baseline and ACmix rows.

Usage: python tools/analysis_tools/paper_table.py [--configs PATTERN ...]
           [--work-dirs DIR] [--no-measure] [--cache FILE | --no-cache]
           [--shape H W] [--paper FILE] [--csv OUT] [--json OUT]
       python tools/analysis_tools/paper_table.py --write-docs [--no-measure]
           [--zoo-out FILE] [--readme FILE]

Prints Markdown, one table per task; each number column comes as the
paper's baseline, the paper's ACmix, ours and ours minus the paper's ACmix.
The configs are ``configs/*.py`` (toy configs and ``_base_`` left out);
``--configs`` narrows them to names matching glob patterns or substrings,
or names config files anywhere. The paper's numbers come from
``configs/paper_results.json``, each row with its table.

Parameters and FLOPs are counted as ``tools/analysis_tools/get_flops.py``
counts them, at the paper's input size exactly (detectors not padded to their
size divisor, as in the mmdet 2.x counter behind the paper's numbers). A
full-size detector takes 10-60 s on a CPU, so the counts are cached
(default ``WORK_DIRS/paper_table_cache.json``, keyed by the model config,
the input size, mmacmix's code and the library versions); ``--no-measure``
prints the cached counts only.

Metrics are the last evaluation logged by mmengine in
``WORK_DIRS/<config name>/`` or in any work dir holding a copy of the
config, the most recent of them.

``--write-docs``, run in the checkout, regenerates ``docs/model_zoo.md``
(whole) and the summary between ``<!-- model-zoo-summary:start -->`` and
``<!-- model-zoo-summary:end -->`` in README.md, with the counts committed
in ``docs/model_zoo_counts.json`` (keyed by the model config and input
size; a changed model is counted again and the file updated).
"""
import argparse
import fnmatch
import logging
import os.path as osp
import sys
from pathlib import Path

from mmengine.logging import MMLogger

import mmacmix  # noqa: F401
from mmacmix.analysis import model_zoo


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
    parser.add_argument(
        '--paper', help="the paper's numbers (JSON; default: the installed "
        'configs/paper_results.json)')
    parser.add_argument('--csv', help='also write the rows as CSV')
    parser.add_argument('--json', help='also write the rows as JSON')
    parser.add_argument(
        '--write-docs', action='store_true',
        help='regenerate docs/model_zoo.md and the README summary')
    parser.add_argument('--zoo-out', default='docs/model_zoo.md',
                        help='where --write-docs writes the model zoo')
    parser.add_argument('--readme', default='README.md',
                        help='the README whose summary --write-docs updates')
    parser.add_argument(
        '--counts', default='docs/model_zoo_counts.json',
        help='the committed counts --write-docs reads and updates')
    args = parser.parse_args(argv)
    if args.write_docs and (args.configs or args.shape):
        parser.error('--write-docs shows every config at the paper\'s size '
                     '(no --configs, no --shape)')
    return args


def select_configs(patterns, paper_names):
    """``{name: path or None}``: the configs to show (None: a paper entry
    without a config here)."""
    stock = model_zoo.stock_configs()
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


def write_docs(rows, paper, zoo_out, readme):
    """docs/model_zoo.md, and the README's summary if it has the
    markers."""
    Path(zoo_out).write_text(model_zoo.zoo_page(rows, paper))
    print(f'wrote {zoo_out}', file=sys.stderr)
    if osp.isfile(readme):
        text = Path(readme).read_text()
        new = model_zoo.replace_between_markers(text,
                                                model_zoo.summary(rows))
        if new != text:
            Path(readme).write_text(new)
            print(f'updated the model-zoo summary in {readme}',
                  file=sys.stderr)


def main(argv=None):
    args = parse_args(argv)
    # mmengine's INFO messages go to stdout, into the table
    MMLogger.get_current_instance().setLevel(logging.WARNING)
    paper = model_zoo.load_paper(args.paper)
    configs = select_configs(args.configs, paper['models'])
    if args.write_docs:
        # committed counts, not tied to the code: the page changes only when
        # a model config or the paper's numbers do
        cache = model_zoo.CountCache(args.counts)
        fingerprint = ''
    else:
        cache = model_zoo.CountCache(None if args.no_cache else (
            args.cache or osp.join(args.work_dirs,
                                   'paper_table_cache.json')))
        fingerprint = model_zoo.code_fingerprint()
    rows = model_zoo.build_rows(
        paper, configs, args.work_dirs, cache, fingerprint,
        allow_measure=not args.no_measure, shape=args.shape)
    if args.write_docs:
        write_docs(rows, paper, args.zoo_out, args.readme)
    else:
        print(model_zoo.markdown(rows, paper))
    return model_zoo.write_records(rows, args.json, args.csv)


if __name__ == '__main__':
    try:
        main()
    except (ValueError, FileNotFoundError) as err:
        sys.exit(f'error: {err}')
