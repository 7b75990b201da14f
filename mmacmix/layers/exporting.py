"""Whether a model is being exported (torch alone).

The layers' fast forms (custom autograd functions working block by block,
masks and grids cached per input size) are opaque to the exporters or fix
the input size; while exporting, the layers take plain-op forms instead,
which the exporters trace for any input size.
"""
import torch


def is_exporting() -> bool:
    """True inside ``torch.onnx.export`` (either exporter) and
    ``torch.export.export``; False in training and inference, and under the
    JIT tracer of the FLOPs counter (which counts the custom autograd
    functions as the ops they stand for)."""
    return torch.onnx.is_in_onnx_export() or _is_torch_exporting()


def _not_exporting() -> bool:
    """Fallback of ``torch.compiler.is_exporting`` for a torch without it
    (added in December 2024, pytorch/pytorch#142425; torch 2.4 and 2.5 lack
    it): never true. ``torch.compiler.is_compiling`` would be true under
    ``torch.compile`` too, which must keep the fast forms; and
    :mod:`mmacmix.deployment` refuses such a torch, so only a direct
    ``torch.export`` call there sees the fast forms."""
    return False


_is_torch_exporting = getattr(torch.compiler, 'is_exporting',
                              _not_exporting)
