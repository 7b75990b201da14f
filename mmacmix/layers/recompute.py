"""Keep cheap-to-recompute tensors out of the autograd graph (torch alone).

A layer whose backward pass needs a large tensor that a cheap function of
other saved tensors gives back (ACmix's projections are a 1x1 convolution
of the layer's input, which autograd keeps anyway) can save the recipe
instead of the tensor: :func:`recompute_in_backward`.
"""
from contextlib import contextmanager
from typing import Callable

import torch
from torch import Tensor


@contextmanager
def recompute_in_backward(fn: Callable, *inputs):
    """Run ``fn(mark, *inputs)`` and yield its result; until the context
    exits, autograd keeps no tensor that ``fn`` passed to ``mark`` (nor any
    view of one) for the backward pass.

    The first time the backward pass needs one of the marked tensors, it
    runs ``fn`` again, without gradients and under the forward pass's
    autocast state (``mark`` then only collects), and it drops the
    recomputed tensors after their last use, so one forward pass costs one
    recomputation. As for gradient checkpointing, ``fn`` must give the same
    tensors again (no randomness) and the parameters it reads must not
    change before the backward pass.

    Args:
        fn (Callable): ``fn(mark, *inputs)``; ``mark(tensor)`` returns
            ``tensor``.
        *inputs: The arguments of ``fn`` after ``mark``.
    """
    # storage address -> (index in marking order, the tensor): holding the
    # tensor keeps the address from being reused inside the context
    marked = {}
    state = dict(pending=0, values=None)
    device = next((x.device.type for x in inputs if isinstance(x, Tensor)),
                  'cpu')
    autocast = dict(device_type=device,
                    enabled=torch.is_autocast_enabled(device),
                    dtype=torch.get_autocast_dtype(device))

    def mark(tensor: Tensor) -> Tensor:
        marked[tensor.untyped_storage().data_ptr()] = (len(marked), tensor)
        return tensor

    def pack(tensor: Tensor):
        entry = marked.get(tensor.untyped_storage().data_ptr())
        if entry is None:
            return tensor
        state['pending'] += 1
        return (entry[0], tensor.dtype, tensor.size(), tensor.stride(),
                tensor.storage_offset())

    def unpack(packed):
        if isinstance(packed, Tensor):
            return packed
        index, dtype, size, stride, offset = packed
        if state['values'] is None:
            values = []
            with torch.no_grad(), torch.autocast(**autocast):
                fn(lambda tensor: values.append(tensor) or tensor, *inputs)
            state['values'] = values
        value = state['values'][index]
        state['pending'] -= 1
        if state['pending'] == 0:  # last use
            state['values'] = None
        if value.dtype != dtype:
            raise RuntimeError(
                f'recompute_in_backward: the recomputed tensor {index} is '
                f'{value.dtype}, the forward pass saved {dtype}')
        return value.as_strided(size, stride, offset)

    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, unpack):
            yield fn(mark, *inputs)
    finally:
        # the graph keeps the hooks, ``pack`` included: let go of the
        # marked tensors
        marked.clear()
