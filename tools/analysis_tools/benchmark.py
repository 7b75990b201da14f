"""Side-by-side speed and memory of two or more configs or backbones on the
same inputs: train step (forward + backward + SGD step) and/or inference.

Usage:
    python tools/analysis_tools/benchmark.py ENTRY [ENTRY ...] [--mode both]
        [--batch 8] [--shape 224 224] [--dtype fp32 [bf16 ...]]
        [--device cpu|cuda] [--runs 5] [--warmup 2] [--threads N]
        [--compile [BACKEND]] [--no-memory] [--json OUT] [--markdown MD]

ENTRY is ``CONFIG`` (the whole model, e.g. a detector with its
post-processing) or ``CONFIG:backbone`` (its backbone alone); CONFIG is a
file or a ``package::path`` config. ``torchvision::NAME`` is a classifier of
``torchvision.models`` (e.g. ``torchvision::resnet50``, trained with
cross-entropy). Example, SwinACmix-T against mmdet's Swin-T at 224², batch
8::

    python tools/analysis_tools/benchmark.py \\
        configs/mask_rcnn_swin_acmix_t_1x_coco.py:backbone \\
        mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py:backbone

``--dtype`` takes several values (``--dtype fp32 bf16``): every entry is
measured in each, and each row gives its speed-up over the entry's row in
the first dtype (``dtype_speedup``).

``--compile`` measures every entry twice, eager and wrapped in
``torch.compile`` (backend ``inductor`` unless named, e.g. ``--compile
aot_eager``), the compiled ones after the eager ones; each compiled row
gives its speed-up over the entry's eager row (``compile_speedup``, eager
median / compiled median; one entry is then enough). The first warm-up step
of each mode compiles.

Times: warm-up steps, then ``--runs`` steps of every entry alternated run by
run in one process (so load from elsewhere falls on all alike); median,
min-max and images/s, and the ratio of every median to the first entry's.
Peak memory: on CUDA the max allocated of each entry's steps; on CPU the
peak RSS of a fresh process per entry (and its rise over the RSS before the
first step). ``--json`` writes all of it, ``--markdown`` appends it to a file
as a table. See :mod:`mmacmix.analysis.benchmark` for what a step is.
"""
import argparse
import json
import platform
import subprocess
import sys

import torch
from mmengine.config import DictAction

import mmacmix  # noqa: F401
from mmacmix.analysis.benchmark import (DTYPES, Entry, alternated_times,
                                        markdown_table, memory_of, summary)
from mmacmix.analysis.complexity import BAD_INPUT

MODES = ('train', 'infer')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('entries', nargs='+',
                        help='CONFIG or CONFIG:backbone, first = reference')
    parser.add_argument('--mode', choices=MODES + ('both', ), default='both')
    parser.add_argument('--batch', type=int, default=8)
    parser.add_argument('--shape', type=int, nargs=2, default=[224, 224],
                        metavar=('H', 'W'))
    parser.add_argument('--dtype', choices=list(DTYPES), nargs='+',
                        default=['fp32'],
                        help='fp32, or bf16 / fp16 autocast; several: '
                        'every entry in each')
    parser.add_argument('--device', default='cpu', choices=('cpu', 'cuda'))
    parser.add_argument('--runs', type=int, default=5,
                        help='timed steps per entry and mode (alternated)')
    parser.add_argument('--warmup', type=int, default=2,
                        help='untimed steps per entry and mode first')
    parser.add_argument('--threads', type=int,
                        help="CPU threads (default: torch's choice)")
    parser.add_argument('--compile', nargs='?', const='inductor',
                        metavar='BACKEND',
                        help='also measure every entry compiled with '
                        'torch.compile (default backend: inductor)')
    parser.add_argument('--no-memory', action='store_true',
                        help='skip the peak-memory measurement')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='overrides applied to every config')
    parser.add_argument('--json', help='write the results here')
    parser.add_argument('--markdown',
                        help='append the results to this file as a '
                        'Markdown table')
    parser.add_argument('--memory-child', type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if (len(args.entries) < 2 and args.compile is None
            and len(args.dtype) < 2 and args.memory_child is None):
        parser.error('give at least two entries to compare (or one with '
                     '--compile or several --dtype)')
    if len(set(args.dtype)) < len(args.dtype):
        parser.error(f'--dtype names a dtype twice: {args.dtype}')
    for name, least in (('batch', 1), ('runs', 1), ('warmup', 0),
                        ('threads', 1)):
        value = getattr(args, name)
        if value is not None and value < least:
            parser.error(f'--{name} must be at least {least}, got {value}')
    if min(args.shape) < 1:
        parser.error(f'--shape must be two positive sizes, got {args.shape}')
    if args.device == 'cuda' and not torch.cuda.is_available():
        parser.error('--device cuda, but CUDA is not available')
    if args.compile is not None:
        import torch._dynamo as dynamo
        backends = dynamo.list_backends(exclude_tags=())
        if args.compile not in backends:
            parser.error(f'unknown torch.compile backend {args.compile!r} '
                         f'(one of {", ".join(sorted(backends))})')
        if args.warmup < 1:
            parser.error('--compile needs --warmup 1 or more (the first '
                         'step compiles)')
    return args


def _modes(args):
    return MODES if args.mode == 'both' else (args.mode, )


def _rows(args):
    """``(spec, dtype, backend)`` of every measured row: the entries eager
    in every dtype, then compiled with ``--compile``."""
    rows = [(spec, dtype, None) for dtype in args.dtype
            for spec in args.entries]
    if args.compile is not None:
        rows += [(spec, dtype, args.compile) for spec, dtype, _ in rows]
    return rows


def _label(spec, dtype, backend, dtypes=('fp32', )):
    label = spec if list(dtypes) == ['fp32'] else f'{spec} [{dtype}]'
    return label if backend is None else f'{label} [compiled: {backend}]'


def _build(args, index):
    spec, dtype, backend = _rows(args)[index]
    return Entry(spec, args.batch, args.shape, args.device, dtype,
                 args.cfg_options, backend)


def _child_argv(args, index):
    """This command line for a fresh process measuring entry ``index``."""
    argv = [sys.executable, __file__, *args.entries,
            '--memory-child', str(index), '--mode', args.mode,
            '--batch', str(args.batch), '--shape', *map(str, args.shape),
            '--dtype', *args.dtype, '--device', args.device]
    if args.threads:
        argv += ['--threads', str(args.threads)]
    if args.compile is not None:
        argv += ['--compile', args.compile]
    if args.cfg_options:
        argv += ['--cfg-options'] + [
            f'{key}={value}' for key, value in args.cfg_options.items()]
    return argv


def memory_child(args):
    """Peak memory of one entry per mode, in this (fresh) process: the
    train step last, as the RSS peak only grows."""
    entry = _build(args, args.memory_child)
    result = {}
    for mode in sorted(_modes(args), key=MODES.index, reverse=True):
        result[mode] = memory_of(entry, mode)
    print(json.dumps(result))


def measure_memory(args, index):
    if args.device == 'cuda':
        entry = _build(args, index)
        result = {mode: memory_of(entry, mode) for mode in _modes(args)}
        del entry
        torch.cuda.empty_cache()
        return result
    proc = subprocess.run(_child_argv(args, index), capture_output=True,
                          text=True)
    if proc.returncode != 0:
        label = _label(*_rows(args)[index], args.dtype)
        raise RuntimeError(f'memory process for {label} failed:\n'
                           f'{proc.stderr[-3000:]}')
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        if args.memory_child is not None:
            return memory_child(args)
        return run(args)
    except BAD_INPUT as err:
        sys.exit(f'error: {err}')


def run(args) -> dict:
    """Time (and measure the memory of) the entries of ``args``; print
    the table and write the JSON."""
    print(f'batch {args.batch}, {args.shape[0]}x{args.shape[1]}, '
          f'{"/".join(args.dtype)}, {args.device}, '
          f'{torch.get_num_threads()} CPU '
          f'threads, {args.warmup} warm-up + {args.runs} runs', flush=True)
    entries = []
    for index, row in enumerate(_rows(args)):
        print(f'building {_label(*row, args.dtype)}', flush=True)
        entries.append(_build(args, index))
    result = dict(
        entries=args.entries, batch=args.batch, shape=args.shape,
        dtype=args.dtype, device=args.device, compile=args.compile,
        device_name=(torch.cuda.get_device_name() if args.device == 'cuda'
                     else platform.processor() or platform.machine()),
        threads=torch.get_num_threads(), torch=torch.__version__,
        runs=args.runs, warmup=args.warmup, results={})
    for mode in _modes(args):
        times = alternated_times(entries, mode, args.runs, args.warmup,
                                 log=lambda line: print(line, flush=True))
        rows = [dict(summary(t), entry=spec, dtype=dtype, compile=backend)
                for (spec, dtype, backend), t in zip(_rows(args), times)]
        count, eager_rows = len(args.entries), len(rows)
        if args.compile is not None:
            eager_rows //= 2
        for index, row in enumerate(rows):
            row['images_per_s'] = args.batch / row['median_s']
            # to the first entry in the same dtype and form
            first = rows[index - index % count]
            row['ratio'] = row['median_s'] / first['median_s']
            if len(args.dtype) > 1:  # to the entry in the first dtype
                base = rows[index % count + index // eager_rows * eager_rows]
                row['dtype_speedup'] = base['median_s'] / row['median_s']
        for eager, compiled in zip(rows, rows[eager_rows:]):
            compiled['compile_speedup'] = (eager['median_s'] /
                                           compiled['median_s'])
        result['results'][mode] = rows
    del entries
    if not args.no_memory:
        for index, row in enumerate(_rows(args)):
            print(f'peak memory of {_label(*row, args.dtype)}',
                  flush=True)
            for mode, memory in measure_memory(args, index).items():
                result['results'][mode][index]['memory'] = memory
    _print_table(result)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(result, f, indent=2)
        print(f'wrote {args.json}')
    if args.markdown:
        with open(args.markdown, 'a') as f:
            f.write(markdown_table(result))
        print(f'appended the table to {args.markdown}')
    return result


def _print_table(result):
    unit = 'max allocated' if result['device'] == 'cuda' else 'peak RSS'
    for mode, rows in result['results'].items():
        print(f'\n{mode}: median (min-max), images/s, ratio to the first '
              f'entry (same dtype and form), {unit} (rise)')
        for row in rows:
            line = (f'  {row["median_s"] * 1e3:8.1f} ms '
                    f'({row["min_s"] * 1e3:.1f}-{row["max_s"] * 1e3:.1f})'
                    f' {row["images_per_s"]:8.2f} img/s '
                    f'{row["ratio"]:6.3f}x')
            memory = row.get('memory')
            if memory:
                line += (f' {memory["peak_mib"]:8.0f} MiB '
                         f'(+{memory["rise_mib"]:.0f})')
            if 'dtype_speedup' in row:
                line += (f' ({row["dtype_speedup"]:.2f}x '
                         f'{result["dtype"][0]} speed)')
            if 'compile_speedup' in row:
                line += f' ({row["compile_speedup"]:.2f}x eager speed)'
            label = _label(row['entry'], row['dtype'], row['compile'],
                           result['dtype'])
            print(f'{line}  {label}')


if __name__ == '__main__':
    main()
