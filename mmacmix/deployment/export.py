"""Export of a model's tensor forward (or a backbone's) to ONNX and
``torch.export``, checked against PyTorch: every ONNX export runs in
onnxruntime at the export size and, when dynamic, at other sizes, and one
that differs by more than :data:`TOLERANCE` is deleted and refused. What
is exported and how the ACmix layers trace: docs/deployment.md.
"""
import os
import os.path as osp
import time
from contextlib import contextmanager
from typing import List, Sequence, Tuple

import torch
import torch.nn as nn

from ..analysis.complexity import TensorForward, build_model, read_config
from ..engine.checkpoint import load_checkpoint_file
from ..utils.torch_version import TorchVersionError, require_torch

# torch.fx.experimental._config.backed_size_oblivious came with
# pytorch/pytorch#148696 (March 2025, days before the 2.7 branch cut): 2.8 is
# the first release sure to have it. It also covers the rest the export needs
# (torch.export.Dim.AUTO, torch 2.5; torch.onnx.export(dynamo=True), 2.5).
SIZE_OBLIVIOUS_TORCH = (2, 8)
SIZE_OBLIVIOUS_FEATURE = ('mmacmix export (torch.export with '
                          'backed_size_oblivious)')

# dynamo: torch.export's graph, sizes symbolic (any input size);
# torchscript: the JIT tracer (dynamo=False), which fixes every size that it
# takes from a tensor whose shape it believes static, so a dynamic export
# may be refused by the check
EXPORTERS = ('dynamo', 'torchscript')
TOLERANCE = 1e-4  # max abs difference in float32


class ExportError(RuntimeError):
    """An export that failed or whose output differs from PyTorch's."""


class FlatOutputs(nn.Module):
    """``module(inputs)`` with its (nested) outputs as one flat tuple of
    tensors."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, inputs: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        return tuple(_flatten(self.module(inputs)))


def _flatten(outputs) -> List[torch.Tensor]:
    if isinstance(outputs, torch.Tensor):
        return [outputs]
    if isinstance(outputs, dict):
        outputs = outputs.values()
    return [t for item in outputs for t in _flatten(item)]


def load_exportable(config: str,
                    checkpoint: str = None,
                    backbone: bool = False) -> Tuple[nn.Module, str]:
    """The config's model in eval mode, with the checkpoint's weights
    (strictly: every parameter present, no extra one), as a one-input
    module with flat outputs, and a description of what it computes.

    Args:
        config (str): Config file (or ``package::path``).
        checkpoint (str, optional): Weights (a runner checkpoint or a state
            dict). Defaults to None (the config's initialisation, random).
        backbone (bool): Export the backbone alone. Defaults to False.
    """
    model, scope = build_model(read_config(config))
    if checkpoint is not None:
        state = load_checkpoint_file(checkpoint, map_location='cpu')
        state = state.get('state_dict', state)
        missing, unexpected = model.load_state_dict(state, strict=False)
        # mmseg's auxiliary head is dropped for inference
        unexpected = [k for k in unexpected
                      if not k.startswith('auxiliary_head.')]
        if missing or unexpected:
            raise ExportError(
                f'checkpoint {checkpoint} does not fit the model of {config}:'
                f' {len(missing)} missing keys (e.g. {missing[:2]}), '
                f'{len(unexpected)} unexpected (e.g. {unexpected[:2]})')
    if backbone:
        module = model.backbone
        what = f'{type(module).__name__} backbone forward ({scope})'
    else:
        module = TensorForward(model, None)
        what = (f"{type(model).__name__} tensor forward ({scope}, "
                f"mode='tensor')")
    return FlatOutputs(module).eval(), what


@contextmanager
def _symbolic_sizes():
    """torch.export without guards on a size being 1 (size-oblivious
    reasoning): otherwise every view of a map that could be one attention
    window wide would fix that case in or out."""
    config = torch.fx.experimental._config
    if not hasattr(config, 'backed_size_oblivious'):
        # exporting without it would fix sizes 1 in or out of the program
        require_torch(SIZE_OBLIVIOUS_FEATURE, SIZE_OBLIVIOUS_TORCH)
        raise TorchVersionError(
            f'{SIZE_OBLIVIOUS_FEATURE}: torch {torch.__version__} has no '
            'torch.fx.experimental._config.backed_size_oblivious')
    with config.patch(backed_size_oblivious=True):
        yield


def _dynamic_shapes(dynamic: bool):
    auto = torch.export.Dim.AUTO
    return ({2: auto, 3: auto}, ) if dynamic else None


def export_program(module: nn.Module, inputs: torch.Tensor,
                   dynamic: bool = True) -> torch.export.ExportedProgram:
    """``torch.export.export`` of ``module(inputs)`` with symbolic height
    and width (``dynamic``): the program runs on any input size the model
    takes."""
    with _symbolic_sizes(), torch.no_grad():
        return torch.export.export(
            module, (inputs, ), dynamic_shapes=_dynamic_shapes(dynamic))


def export_onnx(module: nn.Module,
                inputs: torch.Tensor,
                path: str,
                dynamic: bool = False,
                exporter: str = 'dynamo') -> List[str]:
    """Write ``module(inputs)`` to the ONNX file ``path``, with symbolic
    height and width if ``dynamic``; returns the output names. Unchecked:
    see :func:`check_onnx`."""
    if exporter not in EXPORTERS:
        raise ValueError(f'exporter must be one of {EXPORTERS}, got '
                         f'{exporter!r}')
    with torch.no_grad():
        num_outputs = len(module(inputs))
    names = [f'output{i}' for i in range(num_outputs)]
    kwargs = dict(input_names=['inputs'], output_names=names)
    if exporter == 'dynamo':
        with _symbolic_sizes(), torch.no_grad():
            torch.onnx.export(module, (inputs, ), path, dynamo=True,
                              dynamic_shapes=_dynamic_shapes(dynamic),
                              external_data=False, **kwargs)
    else:
        # torch.onnx.export's ``dynamo`` argument came in torch 2.5
        require_torch('mmacmix ONNX export (torchscript exporter)', (2, 5))
        axes = None
        if dynamic:
            axes = {'inputs': {2: 'height', 3: 'width'}}
        with torch.no_grad():
            torch.onnx.export(module, (inputs, ), path, dynamo=False,
                              opset_version=17, dynamic_axes=axes, **kwargs)
    return names


def _median_ms(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * sorted(times)[len(times) // 2]


def check_onnx(module: nn.Module,
               path: str,
               shapes: Sequence[Tuple[int, int]],
               repeat: int = 1,
               threads: int = None,
               seed: int = 0) -> List[dict]:
    """Run the ONNX file in onnxruntime (CPU) and ``module`` in PyTorch on
    the same random ``(1, 3, H, W)`` input for every ``(H, W)`` of
    ``shapes``; returns per size the max abs difference over all outputs
    (inf if the outputs differ in number or shape, or onnxruntime fails)
    and the median latencies (ms) of ``repeat`` runs after one warm-up,
    each library with ``threads`` CPU threads (default: its own)."""
    import onnxruntime
    options = onnxruntime.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        torch.set_num_threads(threads)
    try:
        session = onnxruntime.InferenceSession(
            path, options, providers=['CPUExecutionProvider'])
    except Exception as err:  # onnxruntime raises its own classes
        raise ExportError(f'onnxruntime cannot load {path}: '
                          f'{_first_line(err)}')
    name = session.get_inputs()[0].name
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for height, width in shapes:
        inputs = torch.randn(1, 3, height, width, generator=gen)
        feed = {name: inputs.numpy()}
        with torch.no_grad():
            expected = module(inputs)
            torch_ms = _median_ms(lambda: module(inputs), repeat)
        row = dict(shape=(height, width), torch_ms=torch_ms)
        try:
            got = session.run(None, feed)
            row['onnxruntime_ms'] = _median_ms(
                lambda: session.run(None, feed), repeat)
        except Exception as err:  # onnxruntime raises its own classes
            row.update(max_abs_diff=float('inf'), failure=str(err)[:200])
            rows.append(row)
            continue
        if len(got) != len(expected) or any(
                tuple(g.shape) != tuple(e.shape)
                for g, e in zip(got, expected)):
            row.update(
                max_abs_diff=float('inf'),
                failure=f'output shapes {[tuple(g.shape) for g in got]}, '
                f'expected {[tuple(e.shape) for e in expected]}')
        else:
            row['max_abs_diff'] = max(
                (torch.from_numpy(g) - e).abs().max().item()
                for g, e in zip(got, expected))
        rows.append(row)
    return rows


def other_shapes(height: int, width: int) -> List[Tuple[int, int]]:
    """Two more input sizes checked for a dynamic export: larger, not
    multiples of the strides, odd ones included."""
    return [(height + 17, width + 39), (height + 40, width + 9)]


def export_and_check(module: nn.Module,
                     shape: Tuple[int, int],
                     path: str,
                     dynamic: bool = False,
                     exporter: str = 'dynamo',
                     check_shapes: Sequence[Tuple[int, int]] = None,
                     tolerance: float = TOLERANCE,
                     repeat: int = 1,
                     threads: int = None) -> dict:
    """Export ``module`` at ``shape`` to ``path`` (:func:`export_onnx`) and
    check it (:func:`check_onnx`) at ``shape`` and, if ``dynamic``, at
    ``check_shapes`` (default :func:`other_shapes`), timing ``repeat``
    runs with ``threads`` threads.

    Returns:
        dict: ``export_s`` (seconds), ``rows`` (see :func:`check_onnx`).

    Raises:
        ExportError: the export failed, or differs from PyTorch by more
            than ``tolerance`` at some size; the file is deleted.
    """
    shapes = [tuple(shape)]
    if dynamic:
        shapes += [tuple(s) for s in (check_shapes or other_shapes(*shape))]
    inputs = torch.randn(
        1, 3, *shape, generator=torch.Generator().manual_seed(1))
    start = time.perf_counter()
    try:
        export_onnx(module, inputs, path, dynamic, exporter)
    except Exception as err:
        _remove(path)
        raise ExportError(f'the {exporter} exporter failed: '
                          f'{type(err).__name__}: {_first_line(err)}')
    export_s = time.perf_counter() - start
    try:
        rows = check_onnx(module, path, shapes, repeat, threads)
    except ExportError:
        _remove(path)
        raise
    wrong = [row for row in rows if not row['max_abs_diff'] <= tolerance]
    if wrong:
        _remove(path)
        details = '; '.join(
            f'{h}x{w}: ' + row.get('failure', f'{row["max_abs_diff"]:.3g}')
            for row in wrong for h, w in [row['shape']])
        raise ExportError(
            f'the {exporter} export differs from PyTorch by more than '
            f'{tolerance:g} (max abs) at {details}; {path} was deleted')
    return dict(export_s=export_s, rows=rows)


def _remove(path: str) -> None:
    if osp.exists(path):
        os.remove(path)


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else ''
