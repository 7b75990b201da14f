"""bf16 autocast on the CPU and torch.compile, for every backbone family
(SwinACmix, PVTACmix, ResNetACmix, SANACmix).

bf16 tolerances: bf16 keeps 8 significant bits, a unit round-off of
``2**-8 = 0.0039``. Each ACmix operator under autocast measured a relative
(L2) error of its output of 0.4-0.8% (1-2 round-offs: its products run in
bf16 with float32 accumulation) and of its gradients 0.4-3% (SAN's
patchwise one the most: its weight MLP's normalisation divides by batch
statistics); the operators are held to 2% and 6%. A whole small backbone in
eval mode measured at most 1% at any stage output: held to 3%. In training
mode, batch statistics of small late maps amplify the round-off through the
depth (a stock mmpretrain ResNet-18 at batch 2 measured 4% at its last
output and 39% on its gradients, SAN-ACmix-10 44% at its fifth stage), so
the train step under autocast is held to what bf16 promises there: finite
outputs, loss and float32 gradients for every parameter, and the loss (the
mean square of the outputs, normalised by the norms) within 2%.
"""
import copy

import pytest
import torch
import torch._dynamo as dynamo

import mmacmix  # noqa: F401  (registers the models, fixes torchvision)
from mmacmix.layers import SlidingACmix, WindowACmix
from mmacmix.layers.patchwise_acmix import PatchwiseACmix
from mmacmix.layers.sr_acmix import SpatialReductionACmix

from helpers import SMALL_BACKBONES, small_backbone


def relative_error(got, expected):
    return ((got.float() - expected).norm() / expected.norm()).item()


def step(model, x, autocast, weights=None):
    """Outputs (float32), the loss and the gradients of ``x`` and every
    parameter of a forward and backward pass of a copy of ``model``,
    under bf16 autocast or not; with ``weights`` (one tensor per output)
    the loss is ``sum(mean(out * w))`` (a random direction: its gradients
    are those of a generic loss), else the mean square of the outputs."""
    model = copy.deepcopy(model)
    x = x.clone().requires_grad_()
    with torch.autocast('cpu', dtype=torch.bfloat16, enabled=autocast):
        outs = model(x)
    outs = [outs] if isinstance(outs, torch.Tensor) else list(outs)
    if weights is None:
        loss = sum(out.float().square().mean() for out in outs)
    else:
        loss = sum((out.float() * w).mean() for out, w in zip(outs, weights))
    loss.backward()
    named = list(model.named_parameters())
    missing = [name for name, p in named if p.grad is None]
    assert not missing, f'no gradient for {missing}'
    return [out.detach().float() for out in outs], loss.detach(), [
        x.grad
    ] + [p.grad for _, p in named]


@pytest.mark.parametrize('name', ['window', 'sr', 'sliding', 'patchwise'])
def test_bf16_operator_close_to_fp32(name):
    """Each ACmix operator in training mode under bf16 autocast: output and
    gradients (input, all parameters together) close to float32's."""
    torch.manual_seed(0)
    op, x = {
        'window': (WindowACmix(32, 2, 7, 3), torch.randn(2, 14, 14, 32)),
        'sr': (SpatialReductionACmix(32, 2, 2), torch.randn(2, 16, 16, 32)),
        'sliding': (SlidingACmix(16, 32, stride=2),
                    torch.randn(2, 16, 16, 16)),
        'patchwise': (PatchwiseACmix(32, 32), torch.randn(2, 32, 16, 16)),
    }[name]
    op.train()
    fp32 = step(op, x, False)
    weights = [torch.randn(out.shape) for out in fp32[0]]
    fp32 = step(op, x, False, weights)
    bf16 = step(op, x, True, weights)
    assert relative_error(bf16[0][0], fp32[0][0]) < 2e-2
    assert relative_error(bf16[2][0], fp32[2][0]) < 6e-2  # the input
    params = [torch.cat([g.flatten() for g in grads[2][1:]])
              for grads in (bf16, fp32)]
    # all together: a parameter whose true gradient is 0 (the encoding's
    # bias, which cancels in the softmax) has round-off for a gradient
    assert relative_error(*params) < 6e-2
    assert all(g.dtype == torch.float32 for g in bf16[2])


@pytest.mark.parametrize('name', SMALL_BACKBONES)
def test_bf16_backbone(name):
    """A train step under bf16 autocast: finite bf16 (or float32) outputs,
    a finite loss close to float32's, finite float32 gradients for every
    parameter; and in eval mode every stage output close to float32's."""
    model, shape = small_backbone(name)
    x = torch.randn(shape)
    model.train()
    outs, loss, grads = step(model, x, True)
    assert all(torch.isfinite(out).all() for out in outs)
    assert torch.isfinite(loss)
    assert all(g.dtype == torch.float32 and torch.isfinite(g).all()
               for g in grads)
    fp32_loss = step(model, x, False)[1]
    assert abs(loss - fp32_loss) / fp32_loss < 2e-2

    model.eval()
    with torch.no_grad():
        fp32 = model(x)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            bf16 = model(x)
    assert len(bf16) == len(fp32)
    for got, expected in zip(bf16, fp32):
        assert got.dtype in (torch.bfloat16, torch.float32)
        assert relative_error(got, expected) < 3e-2


def compiled_matches_eager(name, backend):
    """Two train steps of the small backbone ``name``, eager and wrapped in
    ``torch.compile(backend=backend)``: the whole backbone is one graph (no
    break) and the compiled steps give the eager losses and gradients."""
    model, shape = small_backbone(name)
    model.train()
    x = torch.randn(shape)
    dynamo.reset()
    explanation = dynamo.explain(copy.deepcopy(model))(x)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert explanation.graph_count == 1
    dynamo.reset()
    # a random direction for the loss: the mean square of outputs that
    # norms normalise has gradients of nearly 0, all round-off
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        weights = [torch.randn(out.shape, generator=gen)
                   for out in model(x)]
    results = []
    for compiled in (False, True):
        trained = copy.deepcopy(model)
        forward = (torch.compile(trained, backend=backend)
                   if compiled else trained)
        optimizer = torch.optim.SGD(trained.parameters(), lr=0.1)
        losses = []
        for _ in range(2):  # the second step after an update
            optimizer.zero_grad()
            loss = sum((out * w).mean()
                       for out, w in zip(forward(x), weights))
            loss.backward()
            optimizer.step()
            losses.append(loss.detach())
        grads = torch.cat([p.grad.flatten() for p in trained.parameters()])
        results.append((torch.stack(losses), grads))
    return results


@pytest.mark.parametrize('name', [
    'pvt',
    pytest.param('swin', marks=pytest.mark.slow),
    pytest.param('resnet', marks=pytest.mark.slow),
    pytest.param('san', marks=pytest.mark.slow),
])
def test_compiled_train_step_matches_eager(name):
    """AOT autograd without code generation (``aot_eager``: no C++
    compiler, the eager kernels): the same numbers up to float32
    round-off. PVT (about 20 s) runs by default, the others (1-2 min each
    on 2 busy cores) with ``-m slow``."""
    eager, compiled = compiled_matches_eager(name, 'aot_eager')
    torch.testing.assert_close(compiled[0], eager[0], rtol=1e-5, atol=1e-6)
    assert relative_error(compiled[1], eager[1]) < 1e-5


@pytest.mark.slow
@pytest.mark.parametrize('name', SMALL_BACKBONES)
def test_inductor_train_step_matches_eager(name):
    """The default backend (generated C++ kernels, fused and reordered):
    the losses to float32 round-off, the gradients within 1e-3 of their
    norm (round-off amplified through the depth by batch statistics)."""
    eager, compiled = compiled_matches_eager(name, 'inductor')
    torch.testing.assert_close(compiled[0], eager[0], rtol=1e-4, atol=1e-5)
    assert relative_error(compiled[1], eager[1]) < 1e-3
