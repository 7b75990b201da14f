"""What ``tools/analysis_tools/benchmark.py`` measures: the train step or
the inference of a config's model, of its backbone alone
(``CONFIG:backbone``) or of a torchvision classifier
(``torchvision::NAME``), on synthetic inputs and random weights, timed, with
its peak memory; optionally under ``torch.compile``. What each step runs:
docs/performance.md."""
import resource
import statistics
import time
from contextlib import nullcontext
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

DTYPES = {'fp32': None, 'bf16': torch.bfloat16, 'fp16': torch.float16}
# entries of torchvision.models classifiers: torchvision::resnet50
TORCHVISION = 'torchvision::'


def peak_rss_mib() -> float:
    """Peak RSS of this process (``VmHWM``; unlike ``ru_maxrss`` it does
    not include the RSS of the parent at the fork)."""
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmHWM:'):
                return int(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mib() -> float:
    with open('/proc/self/statm') as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def tensor_memory_mib(fn: Callable[[], object]) -> Tuple[float, float]:
    """Peak and final MiB of CPU tensors alive while ``fn()`` runs, over
    those alive before (the profiler's allocation events). The peak is the
    CPU counterpart of ``torch.cuda.max_memory_allocated``, without the
    memory the C allocator keeps after frees, which RSS also holds; the
    final value after a forward pass whose output ``fn`` keeps is what the
    autograd graph holds for the backward pass (whatever saved-tensor hooks
    did)."""
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU],
                 profile_memory=True) as prof:
        fn()
    deltas = sorted((event.start_ns(), event.nbytes())
                    for event in prof.profiler.kineto_results.events()
                    if event.name() == '[memory]'
                    and event.device_type() == torch.autograd.DeviceType.CPU)
    live = peak = 0
    for _, nbytes in deltas:
        live += nbytes
        peak = max(peak, live)
    return peak / 2**20, live / 2**20


def tensors_mib(tensors: Iterable[torch.Tensor]) -> float:
    """MiB of the distinct storages of ``tensors``."""
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes()
                for t in tensors}
    return sum(storages.values()) / 2**20


def summary(times: Sequence[float]) -> dict:
    """Median and spread of run times in seconds."""
    return dict(median_s=statistics.median(times), min_s=min(times),
                max_s=max(times), runs_s=list(times))


def timed(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds ``fn()`` takes, GPU work included."""
    if device.type == 'cuda':
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == 'cuda':
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def _synthetic_samples(scope: str, batch: int, shape: Sequence[int],
                       num_classes: int, gen: torch.Generator) -> list:
    """Data samples with metainfo and ground truth as the scope's dataset
    pipeline would pack them: 3 boxes with box-shaped masks per image
    (mmdet), a label map (mmseg) or a label (mmpretrain)."""
    h, w = shape
    samples = []
    for _ in range(batch):
        if scope == 'mmdet':
            from mmdet.structures import DetDataSample
            from mmdet.structures.mask import BitmapMasks
            from mmengine.structures import InstanceData
            sample = DetDataSample(metainfo=dict(
                img_shape=(h, w), ori_shape=(h, w), scale_factor=(1., 1.)))
            corner = torch.rand(3, 2, generator=gen) * 0.5
            size = 0.1 + torch.rand(3, 2, generator=gen) * 0.4
            boxes = torch.cat([corner, corner + size], 1) * torch.tensor(
                [w, h, w, h])
            masks = torch.zeros(3, h, w, dtype=torch.uint8)
            for mask, (x1, y1, x2, y2) in zip(masks, boxes.int().tolist()):
                mask[y1:y2, x1:x2] = 1
            sample.gt_instances = InstanceData(
                bboxes=boxes,
                labels=torch.randint(0, num_classes, (3, ), generator=gen),
                masks=BitmapMasks(masks.numpy(), h, w))
        elif scope == 'mmseg':
            from mmengine.structures import PixelData
            from mmseg.structures import SegDataSample
            sample = SegDataSample(metainfo=dict(
                img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w)))
            sample.gt_sem_seg = PixelData(data=torch.randint(
                0, num_classes, (1, h, w), generator=gen))
        else:
            from mmpretrain.structures import DataSample
            sample = DataSample().set_gt_label(
                int(torch.randint(0, num_classes, (1, ), generator=gen)))
        samples.append(sample)
    return samples


def _num_classes(model: nn.Module) -> int:
    for head in ('bbox_head', 'decode_head', 'head', 'roi_head'):
        head = getattr(model, head, None)
        if head is None:
            continue
        for owner in (head, getattr(head, 'bbox_head', None)):
            classes = getattr(owner, 'num_classes', None)
            if isinstance(classes, int):
                return classes
    return 2


class Entry:
    """One model to benchmark, built on ``device``, with its inputs.

    Args:
        spec (str): ``CONFIG`` or ``CONFIG:backbone``.
        batch (int): Images per step.
        shape (tuple): ``(H, W)`` of the images.
        device (str): ``'cpu'`` or ``'cuda'``.
        dtype (str): ``'fp32'``, or ``'bf16'`` / ``'fp16'`` autocast.
        cfg_options (dict, optional): Overrides for the config.
        compile (str, optional): ``torch.compile`` backend (``'inductor'``,
            ``'aot_eager'``, ...) to wrap the model in. Defaults to None
            (eager).
    """

    def __init__(self, spec: str, batch: int, shape: Sequence[int],
                 device: str = 'cpu', dtype: str = 'fp32',
                 cfg_options: dict = None, compile: Optional[str] = None):
        self.spec = spec
        torch.manual_seed(0)
        if spec.startswith(TORCHVISION):
            model, scope, part = _torchvision_model(spec), None, 'torchvision'
        else:
            model, scope, part = _config_model(spec, cfg_options)
        self.part = part
        self.device = torch.device(device)
        self.model = model.to(self.device)
        # the module itself is what the steps call: its data preprocessor
        # and parse_losses stay those of the eager model
        self.forward = (self.model if compile is None else torch.compile(
            self.model, backend=compile))
        self.autocast_dtype = DTYPES[dtype]
        self.optimizer = torch.optim.SGD(
            self.model.parameters(), lr=1e-4, momentum=0.9)

        # per mode (training or not): the inputs and data samples
        gen = torch.Generator().manual_seed(1)
        h, w = shape
        if part in ('backbone', 'torchvision'):
            images = torch.randn(batch, 3, h, w, generator=gen).to(
                self.device)
            # a torchvision classifier trains on labels, a backbone on none
            labels = None if part == 'backbone' else torch.randint(
                0, 1000, (batch, ), generator=gen).to(self.device)
            self.batches = {True: (images, labels), False: (images, None)}
            return
        samples = _synthetic_samples(scope, batch, shape, _num_classes(model),
                                     gen)
        images = [torch.randint(0, 256, (3, h, w), generator=gen,
                                dtype=torch.uint8) for _ in range(batch)]
        self.batches = {}
        for training in (True, False):
            data = self.model.data_preprocessor(
                dict(inputs=images, data_samples=samples), training)
            self.batches[training] = (data['inputs'], data['data_samples'])

    def _autocast(self):
        if self.autocast_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def infer(self) -> None:
        self.model.eval()
        inputs, samples = self.batches[False]
        with torch.no_grad(), self._autocast():
            if self.part in ('backbone', 'torchvision'):
                self.forward(inputs)
            else:
                self.forward(inputs, samples, mode='predict')

    def train_step(self) -> float:
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        inputs, samples = self.batches[True]
        with self._autocast():
            if self.part == 'backbone':
                outs = self.forward(inputs)
                loss = sum(out.float().mean() for out in outs)
            elif self.part == 'torchvision':
                loss = F.cross_entropy(self.forward(inputs).float(), samples)
            else:
                losses = self.forward(inputs, samples, mode='loss')
                loss, _ = self.model.parse_losses(losses)
        loss.backward()
        self.optimizer.step()
        return loss.item()

    def step(self, mode: str) -> Callable[[], object]:
        return self.train_step if mode == 'train' else self.infer


def _config_model(spec: str, cfg_options: Optional[dict]) -> tuple:
    """``(model, scope, part)`` of a ``CONFIG`` or ``CONFIG:backbone``
    entry."""
    from .complexity import build_model, read_config
    config, _, part = spec.rpartition(':')
    if part != 'backbone':
        config, part = spec, 'model'
    cfg = read_config(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    model, scope = build_model(cfg, inference=False)
    return (model.backbone if part == 'backbone' else model), scope, part


def _torchvision_model(spec: str) -> nn.Module:
    """The ``torchvision.models`` classifier a ``torchvision::NAME`` entry
    names, with random weights."""
    import torchvision
    name = spec[len(TORCHVISION):]
    builder = getattr(torchvision.models, name, None)
    if not name.islower() or not callable(builder):
        raise ValueError(f'{spec!r}: torchvision.models has no model '
                         f'{name!r} (e.g. {TORCHVISION}resnet50)')
    return builder()


def memory_of(entry: Entry, mode: str, steps: int = 2) -> Dict[str, float]:
    """Peak memory of ``steps`` steps: CUDA max allocated, or this process's
    peak RSS and its rise over the RSS before the first step (the model, its
    optimizer and inputs already built). Run it in a fresh process per
    model on CPU: the peak RSS of a process never goes down."""
    if entry.device.type == 'cuda':
        torch.cuda.synchronize(entry.device)
        torch.cuda.reset_peak_memory_stats(entry.device)
        before = torch.cuda.memory_allocated(entry.device) / 2**20
        for _ in range(steps):
            entry.step(mode)()
        peak = torch.cuda.max_memory_allocated(entry.device) / 2**20
        return dict(peak_mib=peak, before_mib=before, rise_mib=peak - before)
    before = current_rss_mib()
    for _ in range(steps):
        entry.step(mode)()
    peak = peak_rss_mib()
    return dict(peak_mib=peak, before_mib=before, rise_mib=peak - before)


def alternated_times(entries: List[Entry], mode: str, runs: int,
                     warmup: int, log: Callable[[str], None] = print
                     ) -> List[List[float]]:
    """Times of ``runs`` steps of every entry, after ``warmup`` untimed
    ones, alternating the entries run by run so that a change in the
    machine's load falls on all of them alike."""
    times = [[] for _ in entries]
    for run in range(warmup + runs):
        tag = 'warm-up' if run < warmup else f'run {run - warmup + 1}/{runs}'
        parts = []
        for entry, entry_times in zip(entries, times):
            elapsed = timed(entry.step(mode), entry.device)
            if run >= warmup:
                entry_times.append(elapsed)
            parts.append(f'{elapsed * 1e3:.0f} ms')
        log(f'  {mode} {tag}: ' + ', '.join(parts))
    return times


def markdown_table(result: dict) -> str:
    """A Markdown table of ``tools/analysis_tools/benchmark.py``'s ``result``
    (its JSON): one row per entry and mode, with a heading line saying
    what was measured."""
    unit = 'max allocated' if result['device'] == 'cuda' else 'peak RSS'
    height, width = result['shape']
    lines = [
        f"{result['device_name']} ({result['device']}), batch "
        f"{result['batch']}, {height}x{width}, "
        f"{'/'.join(result['dtype'])}, torch "
        f"{result['torch']}, {result['warmup']} warm-up + {result['runs']} "
        'runs', '',
        f'| entry | mode | median ms (min-max) | images/s | ratio | '
        f'{unit} MiB |', '|---|---|---|---|---|---|'
    ]
    for mode, rows in result['results'].items():
        for row in rows:
            entry = f"`{row['entry']}`"
            if len(result['dtype']) > 1:
                entry += (f" {row['dtype']} ({row['dtype_speedup']:.2f}x "
                          f"{result['dtype'][0]} speed)")
            if row.get('compile'):
                entry += (f" compiled ({row['compile']}, "
                          f"{row['compile_speedup']:.2f}x eager speed)")
            memory = row.get('memory')
            lines.append(
                f"| {entry} | {mode} | {row['median_s'] * 1e3:.1f} "
                f"({row['min_s'] * 1e3:.1f}-{row['max_s'] * 1e3:.1f}) | "
                f"{row['images_per_s']:.2f} | {row['ratio']:.3f} | "
                + (f"{memory['peak_mib']:.0f}" if memory else '-') + ' |')
    return '\n'.join(lines) + '\n\n'
