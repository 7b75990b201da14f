"""Inference time of RetinaNet PVT-ACmix-S against mmdet's RetinaNet PVT-S
on the same input, alternating the two models run by run.

Usage: python tools/analysis/benchmark_pvt_fps.py [--size 800 1333]
       [--runs 5] [--threads 1] [--device cpu]

It times the network (backbone, FPN and head: ``mode='tensor'``) without
data loading or box post-processing, from random weights (no checkpoint is
loaded), and prints the median and spread of each and the ratio
ours / mmdet. The general tool for issue #6 supersedes it.
"""
import argparse
import os.path as osp
import statistics
import sys
import time

import torch

sys.path.insert(0, osp.join(osp.dirname(__file__), '..', '..'))
import mmacmix  # noqa: E402,F401  (before anything imports torchvision)

MODELS = {
    'RetinaNet PVT-ACmix-S': osp.join(
        osp.dirname(__file__), '..', '..', 'configs',
        'retinanet_pvt_acmix_s_1x_coco.py'),
    'RetinaNet PVT-S (mmdet)': 'mmdet::pvt/retinanet_pvt-s_fpn_1x_coco.py',
}


def build(config: str, device: str) -> torch.nn.Module:
    """The config's model with random weights, in eval mode."""
    from mmengine.config import Config
    from mmengine.hub import get_config

    from mmacmix.utils.config_complexity import build_model
    cfg = get_config(config) if '::' in config else Config.fromfile(config)
    return build_model(cfg)[0].to(device)


@torch.no_grad()
def run_once(model: torch.nn.Module, x: torch.Tensor) -> float:
    if x.is_cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    model(x, mode='tensor')
    if x.is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--size', type=int, nargs=2, default=[800, 1333])
    parser.add_argument('--runs', type=int, default=5)
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--device', default='cpu')
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.randn(1, 3, *args.size, device=args.device)
    models = {name: build(cfg, args.device) for name, cfg in MODELS.items()}
    for model in models.values():  # warm-up
        run_once(model, x)
    times = {name: [] for name in models}
    for run in range(args.runs):
        for name, model in models.items():
            times[name].append(run_once(model, x))
        print(f'run {run + 1}/{args.runs}', flush=True)

    medians = {name: statistics.median(t) for name, t in times.items()}
    print(f'input 1x3x{args.size[0]}x{args.size[1]}, {args.device}, '
          f'{args.threads} thread(s), median of {args.runs} runs')
    for name, t in times.items():
        print(f'{name}: {medians[name] * 1e3:.0f} ms '
              f'({min(t) * 1e3:.0f}-{max(t) * 1e3:.0f}), '
              f'{1 / medians[name]:.2f} FPS')
    ours, theirs = medians.values()
    print(f'ratio ours / mmdet: {ours / theirs:.3f}')


if __name__ == '__main__':
    main()
