"""The ACmix paper's Fig. 5 for trained checkpoints: the mixing rates of
every ACmix layer, rate1 (attention path) and rate2 (convolution path), and
their ratio across depth, with the stage boundaries marked.

Usage: python tools/analysis_tools/plot_rates.py CHECKPOINT [CHECKPOINT ...]
           [--out rates.png] [--labels NAME ...]

Works for any checkpoint holding ACmix layers (``MixingRates``): runner
checkpoints of detectors, segmentors and classifiers, converted or plain
state dicts, official layouts. The rates are found by their key suffix
(``...rate1`` / ``...rate2``); a layer's stage is the key up to its first
numbered part (``stages.2`` for Swin and PVT, ``layer3`` for ResNet).
Layers keep the order of the state dict, which is the network's depth
order. Several checkpoints are overlaid, one colour each. The numbers are
also printed, one line per layer. A checkpoint is a file, a URL or any
prefix mmengine reads, loaded without running code.
"""
import argparse
import math
import os.path as osp
import sys
from collections import OrderedDict

from mmengine.runner.checkpoint import CheckpointLoader

import mmacmix  # noqa: F401
from mmacmix.engine.checkpoint import CheckpointError


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('checkpoints', nargs='+', metavar='CHECKPOINT')
    parser.add_argument('--out', default='rates.png', help='output image')
    parser.add_argument('--labels', nargs='+',
                        help='legend names (default: the file names)')
    return parser.parse_args(argv)


def state_dict_of(checkpoint):
    """The weights of a runner checkpoint (``state_dict``), an official one
    (``model``) or a plain state dict."""
    for key in ('state_dict', 'model'):
        if isinstance(checkpoint, dict) and isinstance(
                checkpoint.get(key), dict):
            return checkpoint[key]
    return checkpoint


def stage_of(layer: str) -> str:
    """The key of the stage holding ``layer``: everything up to the first
    numbered part (``backbone.stages.2``, ``backbone.layer3``); '' if
    nothing is numbered."""
    parts = layer.split('.')
    for i, part in enumerate(parts):
        if part[-1:].isdigit():
            return '.'.join(parts[:i + 1])
    return ''


def read_rates(path):
    """``[(layer, stage, rate1, rate2)]`` of every ACmix layer in the
    checkpoint at ``path``, in depth order; stages are numbered from 1.

    Raises:
        FileNotFoundError, CheckpointError: the file cannot be loaded.
        ValueError: no mixing rates, or a rate without its partner.
    """
    weights = state_dict_of(
        CheckpointLoader.load_checkpoint(path, 'cpu', logger='silent'))
    if not isinstance(weights, dict):
        raise ValueError(f'{path} holds no state dict')
    rates = OrderedDict()
    for key, value in weights.items():
        for index, suffix in enumerate(('rate1', 'rate2')):
            if key == suffix or key.endswith('.' + suffix):
                if value.numel() != 1:
                    raise ValueError(f'{key} in {path} is not a scalar '
                                     f'rate (shape {tuple(value.shape)})')
                layer = key[:-len(suffix)].rstrip('.')
                rates.setdefault(layer, [None, None])[index] = value.item()
    if not rates:
        raise ValueError(
            f'no ACmix mixing rates in {path} (no key ends in rate1/rate2); '
            'is it a checkpoint of an ACmix model?')
    unpaired = [layer for layer, pair in rates.items() if None in pair]
    if unpaired:
        raise ValueError(f'{path}: rate1 or rate2 missing for '
                         f'{", ".join(unpaired)}')
    stages = list(dict.fromkeys(stage_of(layer) for layer in rates))
    return [(layer, stages.index(stage_of(layer)) + 1, rate1, rate2)
            for layer, (rate1, rate2) in rates.items()]


def ratio(rate1, rate2):
    return rate1 / rate2 if rate2 != 0 else math.copysign(math.inf, rate1)


def print_rates(label, path, layers):
    print(f'{label}: {path}, {len(layers)} ACmix layers in '
          f'{layers[-1][1]} stages')
    print(f'{"layer":>5} {"stage":>5} {"rate1":>10} {"rate2":>10} '
          f'{"rate1/rate2":>12}  key')
    for i, (layer, stage, rate1, rate2) in enumerate(layers, 1):
        print(f'{i:>5} {stage:>5} {rate1:>10.4f} {rate2:>10.4f} '
              f'{ratio(rate1, rate2):>12.4f}  {layer}')


def stage_starts(layers):
    """Index (from 1) of the first layer of every stage."""
    starts = {}
    for i, (_, stage, _, _) in enumerate(layers, 1):
        starts.setdefault(stage, i)
    return starts


def plot(runs, out):
    import matplotlib
    matplotlib.use('Agg')  # files only, no display needed
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, (ax_rates, ax_ratio) = plt.subplots(
        2, 1, sharex=True, figsize=(10, 6.5), height_ratios=[3, 2])
    colors = plt.rcParams['axes.prop_cycle'].by_key()['color']
    boundaries = {tuple(stage_starts(layers).items()) for _, layers in runs}
    for n, (label, layers) in enumerate(runs):
        color = colors[n % len(colors)]
        x = range(1, len(layers) + 1)
        ax_rates.plot(x, [r[2] for r in layers], '-o', color=color, ms=4,
                      label=f'{label}: rate1 (attention)')
        ax_rates.plot(x, [r[3] for r in layers], '--s', color=color, ms=4,
                      mfc='none', label=f'{label}: rate2 (convolution)')
        ratios = [ratio(r[2], r[3]) for r in layers]
        # a zero rate2 (e.g. a converted attention-only checkpoint) has no
        # finite ratio: leave a gap there
        ax_ratio.plot(x, [q if math.isfinite(q) else math.nan
                          for q in ratios], '-o', color=color, ms=4,
                      label=label)
        # one set of stage marks if all checkpoints agree, else one each,
        # their names in rows of their own
        if len(boundaries) == 1 and n == 0:
            mark_stages(ax_rates, ax_ratio, layers, 'grey', 0)
        elif len(boundaries) > 1:
            mark_stages(ax_rates, ax_ratio, layers, color, n)
    ax_ratio.axhline(1, color='black', lw=0.5)
    ax_rates.set_ylabel('rate')
    rows = 1 if len(boundaries) == 1 else len(runs)
    ax_rates.set_title('ACmix mixing rates per layer', pad=6 + 12 * rows)
    ax_rates.legend(fontsize=8, loc='upper left', bbox_to_anchor=(1.01, 1))
    ax_ratio.set_ylabel('rate1 / rate2')
    ax_ratio.set_xlabel('ACmix layer (depth order)')
    ax_ratio.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_ratio.legend(fontsize=8, loc='upper left', bbox_to_anchor=(1.01, 1))
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def mark_stages(ax_rates, ax_ratio, layers, color, row):
    """Dotted lines between stages, stage names above the rates (in label
    row ``row``)."""
    starts = list(stage_starts(layers).items()) + [(None, len(layers) + 1)]
    for (stage, start), (_, end) in zip(starts, starts[1:]):
        if start > 1:
            for ax in (ax_rates, ax_ratio):
                ax.axvline(start - 0.5, color=color, ls=':', lw=1)
        ax_rates.annotate(f'stage {stage}',
                          ((start + end - 1) / 2, 1.01 + 0.05 * row),
                          xycoords=('data', 'axes fraction'), ha='center',
                          va='bottom', fontsize=8, color=color)


def main(argv=None):
    args = parse_args(argv)
    labels = args.labels or [osp.basename(p) for p in args.checkpoints]
    if len(labels) != len(args.checkpoints):
        raise ValueError(f'{len(labels)} labels for '
                         f'{len(args.checkpoints)} checkpoints')
    runs = []
    for label, path in zip(labels, args.checkpoints):
        layers = read_rates(path)
        print_rates(label, path, layers)
        runs.append((label, layers))
    plot(runs, args.out)
    print(f'wrote {args.out}')
    return runs


if __name__ == '__main__':
    try:
        main()
    except (FileNotFoundError, CheckpointError, ValueError) as err:
        sys.exit(f'error: {err}')
