"""torch: weights-only loading inside mmengine's checkpoint loaders.

Replaces: ``torch.load`` (and ``torch.serialization.load``) with a function
that, while a loader wrapped by
:func:`mmacmix.engine.checkpoint.guard_loader` runs in this thread, loads
weights only (:func:`~mmacmix.engine.checkpoint.safe_torch_load`),
whatever its caller asked for; everywhere else it is torch's own.
Also, through torch's own API (no patch): the classes mmengine's runner
checkpoints hold join the weights-only allowlist.

Why: torch>=2.6 loads with ``weights_only=True``, but mmengine 0.10.7's
http(s) loader goes through ``torch.hub.load_state_dict_from_url``, which
passes ``weights_only=False``, and any loader a library registers may do
the same: a downloaded checkpoint could run code.

Versions: torch 2.6 to 2.13 with mmengine 0.10.7.
Delete when: mmengine's loaders all read with ``weights_only=True``.
"""
import functools

import torch

from ..checkpoint import (allowed_checkpoint_globals, current_source,
                          safe_torch_load)

_torch_load = torch.serialization.load


@functools.wraps(_torch_load)
def _weights_only_in_loaders(f, map_location=None, *args, **kwargs):
    source = current_source()
    if source is None:
        return _torch_load(f, map_location, *args, **kwargs)
    # inside a checkpoint loader: weights only, whatever it asked for
    return safe_torch_load(f, map_location, source=source)


def apply() -> None:
    torch.serialization.add_safe_globals(allowed_checkpoint_globals())
    torch.load = torch.serialization.load = _weights_only_in_loaders
