"""Let torchvision's Python parts import where its C++ ops cannot load.

torch 2.13 has no CPU build of torchvision: the only torchvision 0.28 wheel
links CUDA's libtorch, so on CPU torch its ``_C`` extension fails to load.
torchvision tolerates that for most ops, but registers fake kernels for
``torchvision::nms`` and ``torchvision::qnms`` unconditionally and then fails
at import. mmpretrain imports torchvision for its transforms, so it could not
be used at all. Declaring those two operator schemas (without kernels) before
torchvision is imported lets it import; calling one of its C++ ops still
raises torchvision's own "Couldn't load custom C++ ops" error. Where
torchvision's ops load (any matching torch/torchvision pair), nothing is
done. This module needs torch alone.
"""
import importlib.util
import os

import torch

_UNGUARDED_OPS = (
    'nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor',
    'qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor',
)
_library = None  # keeps the schema registrations alive


def torchvision_ops_load() -> bool:
    """Whether torchvision's ``_C`` extension loads with this torch (True
    when torchvision is absent: there is nothing to fix)."""
    spec = importlib.util.find_spec('torchvision')
    if spec is None or not spec.submodule_search_locations:
        return True
    folder = spec.submodule_search_locations[0]
    extension = next((os.path.join(folder, name) for name in os.listdir(folder)
                      if name.startswith('_C.') and name.endswith('.so')),
                     None)
    if extension is None:
        return False
    try:
        torch.ops.load_library(extension)
    except (OSError, RuntimeError):
        return False
    return True


def make_torchvision_importable() -> None:
    """Declare the ops torchvision assumes exist, if its ops cannot load.
    Idempotent; a no-op once torchvision is imported."""
    global _library
    if _library is not None or torchvision_ops_load():
        return
    _library = torch.library.Library('torchvision', 'DEF')
    for schema in _UNGUARDED_OPS:
        _library.define(schema)
