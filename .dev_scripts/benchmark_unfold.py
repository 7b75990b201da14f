"""ResNet-ACmix and SAN-ACmix: our memory-bounded attention (custom autograd
functions) vs the ``nn.Unfold`` formulation of the official / SAN code, side
by side.

Both variants are the same classifier (backbone, global average pool,
1000-class fc, cross-entropy, SGD with momentum) with the same weights; only
the attention of the ACmix operators differs (the unfold one is the tests'
oracle: ``tests/acmix_oracle.py`` for ResNet-ACmix's sliding windows,
``tests/san_acmix_oracle.py`` for SAN-ACmix's patchwise attention).

* Time: one process, warm-up steps, then ``--runs`` alternated train steps
  (forward + backward + optimizer step) of each variant; median and spread,
  and the ratio unfold / ours. Alternating makes the ratio robust to load
  from other processes; the absolute times are not.
* Peak memory: one fresh process per variant, which runs ``--mem-steps``
  train steps and reports

  - the peak of the tensors alive during a train step, the training state
    (weights, SGD momentum, input) included: the CPU counterpart of
    ``torch.cuda.max_memory_allocated``, and the goal's measure;
  - its peak RSS (``VmHWM``), and that peak over the RSS it had before the
    first step (model, optimizer and input built). RSS also holds the
    libraries (torch, mmengine: ~370 MiB here) and the memory the C
    allocator keeps after frees;
  - the tensors that a forward pass leaves alive for the backward pass.

Usage:
    python .dev_scripts/benchmark_unfold.py [--family resnet] \
        [--depth 50] [--batch 4] [--size 224] [--runs 5] [--out result.json]
    python .dev_scripts/benchmark_unfold.py --family san --depth 10 \
        --batch 8 --threads 1
"""
import argparse
import importlib.util
import json
import os.path as osp
import platform
import subprocess
import sys
import time

import torch
import torch.nn as nn

import mmacmix  # noqa: F401
from mmacmix.analysis.benchmark import (current_rss_mib, peak_rss_mib, summary,
                                        tensor_memory_mib, tensors_mib)
from mmacmix.models.backbones import ResNetACmix, SANACmix

VARIANTS = ('ours', 'unfold')
# family: (backbone, depths, the oracle's module in tests/)
FAMILIES = {
    'resnet': (ResNetACmix, (26, 38, 50), 'acmix_oracle'),
    'san': (SANACmix, (10, 15, 19), 'san_acmix_oracle'),
}


def load_oracle(name: str):
    """The unfold oracle ``tests/<name>.py`` of this checkout."""
    path = osp.join(osp.dirname(osp.abspath(__file__)), '..', 'tests',
                    f'{name}.py')
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--family', choices=list(FAMILIES), default='resnet')
    parser.add_argument('--depth', type=int,
                        help='default: the largest of the family')
    parser.add_argument('--batch', type=int, default=4)
    parser.add_argument('--size', type=int, default=224)
    parser.add_argument('--runs', type=int, default=5,
                        help='timed train steps per variant (alternated)')
    parser.add_argument('--warmup', type=int, default=1,
                        help='untimed train steps per variant first')
    parser.add_argument('--mem-steps', type=int, default=2,
                        help='train steps of each peak-memory process')
    parser.add_argument('--threads', type=int, default=None,
                        help='torch threads (default: torch\'s choice)')
    parser.add_argument('--channels-last', action='store_true',
                        help='both models and the input in channels-last '
                        'memory format')
    parser.add_argument('--skip-memory', action='store_true')
    parser.add_argument('--out', help='write the results as JSON here')
    parser.add_argument('--memory-child', choices=VARIANTS,
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    depths = FAMILIES[args.family][1]
    if args.depth is None:
        args.depth = depths[-1]
    elif args.depth not in depths:
        parser.error(f'--depth of {args.family} must be one of {depths}')
    return args


class Classifier(nn.Module):

    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone
        self.fc = nn.Linear(self.backbone.num_features[-1], 1000)

    def forward(self, x):
        return self.fc(self.backbone(x)[-1].mean((2, 3)))


def build(variant, args):
    backbone, _, oracle = FAMILIES[args.family]
    torch.manual_seed(0)
    model = Classifier(backbone(args.depth)).train()
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if variant == 'unfold':
        load_oracle(oracle).use_unfold_attention(model)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    return model, optimizer


def make_batch(args):
    generator = torch.Generator().manual_seed(1)
    images = torch.randn(
        args.batch, 3, args.size, args.size, generator=generator)
    if args.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 1000, (args.batch, ), generator=generator)
    return images, labels


def train_step(model, optimizer, images, labels):
    optimizer.zero_grad(set_to_none=True)
    loss = nn.functional.cross_entropy(model(images), labels)
    loss.backward()
    optimizer.step()
    return loss.item()


def memory_child(args):
    model, optimizer = build(args.memory_child, args)
    images, labels = make_batch(args)
    before = current_rss_mib()
    for _ in range(args.mem_steps):
        train_step(model, optimizer, images, labels)
    peak = peak_rss_mib()
    # after the RSS peak, which the profiler's own memory must not raise
    state = tensors_mib([
        *model.parameters(), *model.buffers(), images, labels,
        *(t for s in optimizer.state.values() for t in s.values()
          if isinstance(t, torch.Tensor))
    ])
    step, _ = tensor_memory_mib(
        lambda: train_step(model, optimizer, images, labels))
    outputs = []
    _, kept = tensor_memory_mib(lambda: outputs.append(model(images)))
    print(json.dumps(dict(
        peak_tensor_mib=state + step, state_mib=state,
        peak_rss_mib=peak, rss_before_mib=before,
        peak_increase_mib=peak - before, kept_mib=kept)))


def measure_memory(args, variant):
    cmd = [sys.executable, __file__, '--memory-child', variant,
           '--family', args.family, '--depth', str(args.depth),
           '--batch', str(args.batch), '--size', str(args.size),
           '--mem-steps', str(args.mem_steps)]
    if args.threads:
        cmd += ['--threads', str(args.threads)]
    if args.channels_last:
        cmd.append('--channels-last')
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_child:
        return memory_child(args)

    images, labels = make_batch(args)
    models = {variant: build(variant, args) for variant in VARIANTS}
    # same weights, so both variants compute the same thing
    models['unfold'][0].load_state_dict(models['ours'][0].state_dict())
    print(f'{FAMILIES[args.family][0].__name__}-{args.depth}, batch '
          f'{args.batch}, {args.size}x{args.size}, '
          f'{torch.get_num_threads()} threads, '
          f'train step = forward + backward + SGD step', flush=True)

    times = {variant: [] for variant in VARIANTS}
    for step in range(args.warmup + args.runs):
        for variant in VARIANTS:
            start = time.perf_counter()
            train_step(*models[variant], images, labels)
            elapsed = time.perf_counter() - start
            if step >= args.warmup:
                times[variant].append(elapsed)
            run = step - args.warmup + 1
            tag = 'warm-up' if run < 1 else f'run {run}/{args.runs}'
            print(f'  {tag}: {variant} {elapsed:.2f} s', flush=True)
    del models

    result = dict(
        family=args.family, depth=args.depth, batch=args.batch,
        size=args.size, threads=torch.get_num_threads(),
        torch=torch.__version__,
        machine=platform.processor() or platform.machine(),
        time={variant: summary(times[variant]) for variant in VARIANTS})
    # medians (the goal) and minima (the least disturbed runs, telling on
    # a loaded machine)
    for stat, key in (('median', 'speedup'), ('min', 'speedup_min')):
        ours = result['time']['ours'][f'{stat}_s']
        unfold = result['time']['unfold'][f'{stat}_s']
        result[key] = unfold / ours
        print(f'train step {stat}: ours {ours:.2f} s, unfold {unfold:.2f} s '
              f'-> {result[key]:.2f}x faster', flush=True)

    if not args.skip_memory:
        memory = {variant: measure_memory(args, variant)
                  for variant in VARIANTS}
        result['memory'] = memory
        ratios = {
            key: memory['unfold'][key] / memory['ours'][key]
            for key in ('peak_tensor_mib', 'peak_rss_mib',
                        'peak_increase_mib', 'kept_mib')
        }
        result['memory_ratio'] = ratios['peak_tensor_mib']
        result['rss_ratio'] = ratios['peak_rss_mib']
        result['rss_increase_ratio'] = ratios['peak_increase_mib']
        result['kept_ratio'] = ratios['kept_mib']
        for variant in VARIANTS:
            m = memory[variant]
            print(f"{variant}: peak tensors {m['peak_tensor_mib']:.0f} MiB "
                  f"({m['state_mib']:.0f} MiB of weights, momentum and "
                  f"input); peak RSS {m['peak_rss_mib']:.0f} MiB "
                  f"(+{m['peak_increase_mib']:.0f} MiB over "
                  f"{m['rss_before_mib']:.0f} MiB before training); kept "
                  f"for the backward pass {m['kept_mib']:.0f} MiB")
        print(f"unfold / ours: peak tensors {ratios['peak_tensor_mib']:.2f}x"
              f", peak RSS {ratios['peak_rss_mib']:.2f}x (its increase "
              f"{ratios['peak_increase_mib']:.2f}x), kept for the backward "
              f"pass {ratios['kept_mib']:.2f}x")
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(result, f, indent=2)
        print(f'wrote {args.out}')
    return result


if __name__ == '__main__':
    main()
