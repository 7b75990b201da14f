"""Train-step time of one model with compiled mmcv's ops and with
mmacmix.ops (the PyTorch backend for mmcv-lite), in one process.

Usage:
    python tools/analysis_tools/benchmark_mmcv_ops.py CONFIG
        [--shape 800 1333] [--batch 1] [--runs 5] [--warmup 1]
        [--threads N] [--json OUT]

Needs mmcv built with its ops. The model (random weights, synthetic ground
truth: see :mod:`mmacmix.analysis.benchmark`) is built once; each run times
one train step with every ``mmcv.ops`` module's ``ext_module`` the compiled
extension and one with it :mod:`mmacmix.ops`, the order alternating run by
run so that load from elsewhere falls on both alike. It prints both
medians and the median of the per-run ratios (backend / compiled).
Example, the full-size Mask R-CNN (1000 proposals, 512 RoIs per image)::

    python tools/analysis_tools/benchmark_mmcv_ops.py \\
        configs/mask_rcnn_swin_acmix_t_1x_coco.py --shape 800 1333
"""
import argparse
import json
import statistics
import sys
from contextlib import contextmanager

import torch

import mmacmix  # noqa: F401
import mmacmix.ops
from mmacmix.analysis.benchmark import Entry, timed

BACKENDS = ('compiled', 'mmacmix.ops')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='a detector, segmentor or '
                        'classifier config')
    parser.add_argument('--shape', type=int, nargs=2, default=[800, 1333],
                        metavar=('H', 'W'))
    parser.add_argument('--batch', type=int, default=1)
    parser.add_argument('--runs', type=int, default=5,
                        help='timed steps per backend (alternated)')
    parser.add_argument('--warmup', type=int, default=1,
                        help='untimed steps per backend first')
    parser.add_argument('--threads', type=int,
                        help="CPU threads (default: torch's choice)")
    parser.add_argument('--json', help='write the result here too')
    return parser.parse_args(argv)


def ext_modules():
    """The ``mmcv.ops`` modules that call ``ext_module``, each with its
    own (compiled) one."""
    import mmcv.ops  # noqa: F401  (imports every op module)
    return {
        module: module.ext_module
        for name, module in list(sys.modules.items())
        if name.startswith('mmcv.ops.') and hasattr(module, 'ext_module')
    }


@contextmanager
def backend(name, compiled):
    """Run mmcv's ops through ``name``'s functions inside the block."""
    if name == 'compiled':
        yield
        return
    for module in compiled:
        module.ext_module = mmacmix.ops
    try:
        yield
    finally:
        for module, ext in compiled.items():
            module.ext_module = ext


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    compiled = ext_modules()
    if not any(getattr(ext, '__file__', '').endswith('.so')
               for ext in compiled.values()):
        raise SystemExit('this needs mmcv built with its compiled ops: '
                         'mmcv._ext is not a compiled extension here')
    entry = Entry(args.config, args.batch, args.shape)
    times = {name: [] for name in BACKENDS}
    for run in range(args.warmup + args.runs):
        order = BACKENDS if run % 2 == 0 else BACKENDS[::-1]
        for name in order:
            with backend(name, compiled):
                elapsed = timed(entry.train_step, entry.device)
            if run >= args.warmup:
                times[name].append(elapsed)
            tag = ('warm-up' if run < args.warmup else
                   f'run {run - args.warmup + 1}')
            print(f'{tag} {name}: {elapsed * 1e3:.0f} ms', flush=True)
    ratios = [ours / base for ours, base in zip(times['mmacmix.ops'],
                                                times['compiled'])]
    result = dict(
        config=args.config, shape=args.shape, batch=args.batch,
        threads=torch.get_num_threads(), runs_s=times,
        median_s={name: statistics.median(t) for name, t in times.items()},
        ratio=statistics.median(ratios))
    print(f"median train step: compiled {result['median_s']['compiled']:.3f}"
          f" s, mmacmix.ops {result['median_s']['mmacmix.ops']:.3f} s, "
          f"ratio {result['ratio']:.3f}")
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == '__main__':
    main()
