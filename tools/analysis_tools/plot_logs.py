"""Loss and metric curves of a training run, from the scalars mmengine logs
in its work dir.

Usage: python tools/analysis_tools/plot_logs.py WORK_DIR [--keys KEY ...]
           [--all-runs] [--out curves.png]

Reads ``WORK_DIR/<timestamp>/vis_data/scalars.json`` (mmengine's
``LocalVisBackend``, on in every config here) of the newest run that logged
training or validation scalars, or of all runs in order with
``--all-runs`` (a resumed training continues the iteration count). One
plot per key: training scalars over iterations, validation metrics over
epochs (epoch-based training) or iterations. Without ``--keys`` it plots
``loss`` and whichever of ``coco/bbox_mAP``, ``coco/segm_mAP``, ``mIoU``
and ``accuracy/top1`` were logged. A summary of every curve is printed.
"""
import argparse
import os.path as osp
import sys

from mmacmix.analysis.logs import NoLogsError, load_runs, series

DEFAULT_KEYS = ('loss', 'coco/bbox_mAP', 'coco/segm_mAP', 'mIoU',
                'accuracy/top1')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('work_dir', help='the work dir of a training')
    parser.add_argument('--keys', nargs='+', help='scalars to plot')
    parser.add_argument('--all-runs', action='store_true',
                        help='join all timestamped runs instead of taking '
                        'the newest')
    parser.add_argument('--out', help='output image (default: '
                        'WORK_DIR/curves.png)')
    return parser.parse_args(argv)


def select_records(work_dir, all_runs):
    """``(run names, records)`` of the newest run with training or
    validation scalars, or of all runs joined."""
    # test runs log metrics without a step: nothing to draw a curve over
    runs = [(name, records) for name, records in load_runs(work_dir)
            if any('step' in r for r in records)]
    if not runs:
        raise NoLogsError(f'no training or validation scalars in {work_dir} '
                          '(only test runs)')
    runs = runs if all_runs else runs[-1:]
    return [name for name, _ in runs], [r for _, rs in runs for r in rs]


def curves(records, keys):
    """``{key: (x name, points)}``; raises ValueError for a key never
    logged."""
    logged = sorted({k for r in records for k in r})
    found = {}
    for key in keys or DEFAULT_KEYS:
        x_name, points = series(records, key)
        if points:
            found[key] = (x_name, points)
        elif keys:
            raise ValueError(f'{key!r} was never logged; logged keys: '
                             f'{", ".join(logged)}')
    if not found:
        raise ValueError('none of ' + ', '.join(DEFAULT_KEYS) + ' was '
                         f'logged; pick --keys among: {", ".join(logged)}')
    return found


def print_summary(found):
    print(f'{"key":<20} {"x":>5} {"points":>6} {"first":>10} {"last":>10} '
          f'{"min":>10} {"max":>10}')
    for key, (x_name, points) in found.items():
        values = [v for _, v in points]
        print(f'{key:<20} {x_name:>5} {len(points):>6} {values[0]:>10.4f} '
              f'{values[-1]:>10.4f} {min(values):>10.4f} '
              f'{max(values):>10.4f}')


def plot(found, title, out):
    import matplotlib
    matplotlib.use('Agg')  # files only, no display needed
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(len(found), 1, squeeze=False,
                             figsize=(8, 2.6 * len(found)))
    for ax, (key, (x_name, points)) in zip(axes[:, 0], found.items()):
        ax.plot([x for x, _ in points], [v for _, v in points],
                '-o' if len(points) < 30 else '-', ms=3)
        ax.set_ylabel(key)
        ax.set_xlabel(x_name)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0, 0].set_title(title)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(argv=None):
    args = parse_args(argv)
    names, records = select_records(args.work_dir, args.all_runs)
    found = curves(records, args.keys)
    print(f'{args.work_dir}: run {", ".join(names)}')
    print_summary(found)
    out = args.out or osp.join(args.work_dir, 'curves.png')
    plot(found, f'{osp.basename(osp.normpath(args.work_dir))} '
         f'({", ".join(names)})', out)
    print(f'wrote {out}')
    return found


if __name__ == '__main__':
    try:
        main()
    except (FileNotFoundError, ValueError) as err:
        sys.exit(f'error: {err}')
