"""Run the ops on the calling thread alone, as mmcv's CPU kernels do."""
import functools

import torch


def one_thread(op):
    """``op`` with torch's intra-op threads set to one while it runs (and
    restored after). Its many small tensor operations each end in a wait
    for all of torch's threads: on a busy machine, where one of them may
    not be scheduled for a while, NMS and RoIAlign took 5-10 times longer
    with two threads than with one, while mmcv's kernels run on one."""

    @functools.wraps(op)
    def wrapper(*args, **kwargs):
        threads = torch.get_num_threads()
        if threads == 1:
            return op(*args, **kwargs)
        torch.set_num_threads(1)
        try:
            return op(*args, **kwargs)
        finally:
            torch.set_num_threads(threads)

    return wrapper
