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
    return torch.onnx.is_in_onnx_export() or torch.compiler.is_exporting()
