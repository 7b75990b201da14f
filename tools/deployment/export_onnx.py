"""Export an mmacmix model to ONNX and check it in onnxruntime.

Usage: python tools/deployment/export_onnx.py CONFIG [CHECKPOINT]
           --shape H W [--dynamic] [--out FILE] [--backbone]
           [--exporter {dynamo,torchscript}] [--check-shape H W ...]
           [--tolerance T] [--repeat N] [--threads N]

Exports the config's tensor forward (classifier: class scores; detector:
the head's per-level class scores and box deltas; segmentor: the decode
head's logits) or, with ``--backbone``, the backbone's feature maps, on
the normalised ``(1, 3, H, W)`` batch that the data preprocessor produces.
Without CHECKPOINT the weights are the config's initialisation. The ONNX
file is run in onnxruntime at H x W and, with ``--dynamic`` (symbolic
height and width), at two other sizes (``--check-shape`` to choose them);
an export that differs from PyTorch by more than the tolerance is deleted
and the tool exits with an error. Prints the export time, the max abs
differences and the latencies of PyTorch and onnxruntime (CPU).
"""
import argparse
import os
import os.path as osp
import sys

import mmacmix  # noqa: F401
from mmacmix.deployment import (EXPORTERS, TOLERANCE, ExportError,
                                export_and_check, load_exportable)
from mmacmix.engine.checkpoint import CheckpointError


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', nargs='?', help='checkpoint file')
    parser.add_argument('--shape', type=int, nargs=2, required=True,
                        metavar=('H', 'W'), help='export input size')
    parser.add_argument('--dynamic', action='store_true',
                        help='symbolic input height and width')
    parser.add_argument('--out', help='ONNX file (default: the config name '
                        'with .onnx, in the current folder)')
    parser.add_argument('--backbone', action='store_true',
                        help='export the backbone alone')
    parser.add_argument('--exporter', choices=EXPORTERS, default='dynamo',
                        help='torch.onnx.export(dynamo=True) or the '
                        'TorchScript tracer (dynamo=False)')
    parser.add_argument('--check-shape', type=int, nargs=2, action='append',
                        metavar=('H', 'W'), help='another size to check a '
                        'dynamic export at (repeatable; default two)')
    parser.add_argument('--tolerance', type=float, default=TOLERANCE,
                        help='max abs difference allowed')
    parser.add_argument('--repeat', type=int, default=5,
                        help='timed runs per size (median)')
    parser.add_argument('--threads', type=int,
                        help='CPU threads of PyTorch and onnxruntime '
                        '(default: their own)')
    args = parser.parse_args(argv)
    shapes = [args.shape] + (args.check_shape or [])
    if any(s <= 0 for shape in shapes for s in shape):
        raise ValueError(f'input sizes must be positive, got {shapes}')
    if args.check_shape and not args.dynamic:
        raise ValueError('--check-shape needs --dynamic')
    if args.repeat < 1:
        raise ValueError(f'--repeat must be at least 1, got {args.repeat}')
    if args.threads is not None and args.threads < 1:
        raise ValueError(f'--threads must be at least 1, got {args.threads}')
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    out = args.out or osp.splitext(osp.basename(args.config))[0] + '.onnx'
    module, what = load_exportable(args.config, args.checkpoint,
                                   args.backbone)
    if osp.dirname(out):
        os.makedirs(osp.dirname(out), exist_ok=True)
    height, width = args.shape
    print(f'exporting: {what}, input (1, 3, {height}, {width})'
          f'{" with symbolic H, W" if args.dynamic else ""}')
    report = export_and_check(module, args.shape, out, args.dynamic,
                              args.exporter, args.check_shape,
                              args.tolerance, args.repeat, args.threads)
    print(f'wrote {out} ({args.exporter} exporter, '
          f'{report["export_s"]:.1f} s)')
    print(f'{"input":>11} {"max abs diff":>13} {"PyTorch ms":>11} '
          f'{"onnxruntime ms":>15}')
    for row in report['rows']:
        h, w = row['shape']
        print(f'{f"{h}x{w}":>11} {row["max_abs_diff"]:>13.2e} '
              f'{row["torch_ms"]:>11.1f} {row["onnxruntime_ms"]:>15.1f}')
    print(f'all within {args.tolerance:g}')
    return report


if __name__ == '__main__':
    try:
        main()
    except (FileNotFoundError, CheckpointError, ExportError,
            ValueError) as err:
        sys.exit(f'error: {err}')
