__version__ = '0.1.0'

# The oldest torch mmacmix supports, read by setup.py (install_requires) and
# checked on import by mmacmix.utils.torch_version: torch 2.4 added what the
# package calls unconditionally (torch.serialization.add_safe_globals, which
# every ``import mmacmix`` with mmengine applies, and the device-type autocast
# queries torch.is_autocast_enabled(device) / torch.get_autocast_dtype that
# the layers' recomputation reads). No upper bound: the newest tested is 2.13
# (CPU); 2.11 is checked on GPU. Newer features have a fallback or name the
# torch they need at the call site (docs/get_started.md#supported-torch).
TORCH_MIN = (2, 4)
