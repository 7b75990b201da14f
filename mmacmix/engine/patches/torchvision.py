"""torchvision: importable where its C++ ops cannot load.

Replaces: nothing of torchvision; it declares the schemas of
``torchvision::nms`` and ``torchvision::qnms`` (without kernels) before
torchvision is imported, when torchvision's ``_C`` extension does not load
with this torch. Calling one of its C++ ops still raises torchvision's own
"Couldn't load custom C++ ops" error.

Why: the only torchvision wheel for torch 2.13 links CUDA's libtorch, so
with the CPU torch its ``_C`` fails to load. torchvision tolerates that for
most ops but registers fake kernels for those two unconditionally, and its
import fails; mmpretrain imports torchvision for its transforms. Where
torchvision's ops load (a matching torch/torchvision pair), nothing is
done. Needs torch alone; must run before anything imports torchvision.

Versions: torchvision 0.28 beside CPU torch 2.13.
Delete when: a CPU torchvision wheel exists for the torch in use.
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


def apply() -> None:
    """Declare the ops torchvision assumes exist, if its ops cannot load.
    Idempotent; a no-op once torchvision is imported."""
    global _library
    if _library is not None or torchvision_ops_load():
        return
    _library = torch.library.Library('torchvision', 'DEF')
    for schema in _UNGUARDED_OPS:
        _library.define(schema)
