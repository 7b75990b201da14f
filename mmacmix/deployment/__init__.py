"""Export of mmacmix models to ONNX and ``torch.export``
(docs/deployment.md)."""
from .export import (EXPORTERS, TOLERANCE, ExportError, FlatOutputs,
                     check_onnx, export_and_check, export_onnx, export_program,
                     load_exportable)

__all__ = [
    'EXPORTERS', 'TOLERANCE', 'ExportError', 'FlatOutputs', 'check_onnx',
    'export_and_check', 'export_onnx', 'export_program', 'load_exportable'
]
