"""``recompute_in_backward``: the backward pass recomputes the marked
tensors once, from the inputs, under the forward pass's autocast state, and
gets exactly the gradients of keeping them; the graph does not hold them."""
import weakref

import pytest
import torch

from mmacmix.layers.recompute import recompute_in_backward


def project(mark, x, weight, calls):
    calls.append(None)
    return mark(x @ weight)


def consume(y):
    """Three saved uses of ``y``: ``sin`` keeps it, the product keeps two
    views of it."""
    return y.sin().sum() + (y[:, :3] * y[:, 1:4]).sum()


def inputs(dtype=torch.float64):
    gen = torch.Generator().manual_seed(0)
    return (torch.randn(5, 4, generator=gen, dtype=dtype, requires_grad=True),
            torch.randn(4, 6, generator=gen, dtype=dtype, requires_grad=True))


def test_recomputed_once_with_the_same_gradients():
    x, weight = inputs()
    expected = torch.autograd.grad(
        consume(project(lambda t: t, x, weight, [])), (x, weight))
    calls = []
    with recompute_in_backward(project, x, weight, calls) as y:
        loss = consume(y)
    assert len(calls) == 1
    grads = torch.autograd.grad(loss, (x, weight))
    assert len(calls) == 2  # one recomputation for the three uses
    for got, want in zip(grads, expected):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_the_graph_does_not_hold_marked_tensors():
    x, weight = inputs()
    refs = []

    def project_and_watch(mark, x, weight):
        y = project(mark, x, weight, [])
        refs.append(weakref.ref(y))
        return y

    with recompute_in_backward(project_and_watch, x, weight) as y:
        loss = consume(y)
    del y
    assert refs[-1]() is None
    loss.backward()  # recomputes it
    assert x.grad is not None

    # without marking, the graph keeps it
    loss = consume(project_and_watch(lambda t: t, x, weight))
    assert refs[-1]() is not None


def test_recomputes_under_the_forward_autocast_state():
    """Under bf16 autocast the matmul gives bf16; the recomputation (in a
    backward pass outside autocast) must too, or unpacking fails."""
    x, weight = inputs(torch.float32)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        expected = torch.autograd.grad(
            consume(project(lambda t: t, x, weight, [])), (x, weight))
        with recompute_in_backward(project, x, weight, []) as y:
            assert y.dtype == torch.bfloat16
            loss = consume(y)
    grads = torch.autograd.grad(loss, (x, weight))
    for got, want in zip(grads, expected):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_a_recomputation_of_another_dtype_is_an_error():
    x, weight = inputs(torch.float32)

    def project_changing(mark, x, weight, calls):
        calls.append(None)
        # a function that does not give the same tensor again
        return mark(x @ weight if len(calls) == 1 else (x @ weight).double())

    with recompute_in_backward(project_changing, x, weight, []) as y:
        loss = consume(y)
    with pytest.raises(RuntimeError, match='recomputed tensor 0 is '
                       'torch.float64, the forward pass saved torch.float32'):
        loss.backward()
