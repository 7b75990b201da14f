"""On CUDA: the custom autograd functions against their CPU results and the
float64 oracles, every backbone's forward and backward pass against the
CPU's, and bf16 / fp16 AMP train steps of every toy config.

Marker ``cuda``; every test here is skipped without CUDA. Run them with
``pytest -m cuda tests/test_cuda.py`` or ``.dev_scripts/device_check.sh``.
TF32 is off in every test: float32 matrix products and convolutions then
round as on the CPU, and the tolerances below are those of float32.
"""
import copy
from pathlib import Path

import pytest
import torch

import mmacmix  # noqa: F401  (registers the models, fixes torchvision)
from mmacmix.engine.runner import build_runner, load_config
from mmacmix.layers import patchwise_acmix, sliding_acmix
from mmacmix.layers.patchwise_acmix import (PatchwiseACmix,
                                            patchwise_aggregation,
                                            window_projection)
from mmacmix.layers.sliding_acmix import SlidingACmix, sliding_window_attention

from acmix_oracle import unfold_window_attention
from acmix_oracle import use_unfold_attention as use_unfold_sliding
from helpers import REPO_ROOT, SMALL_BACKBONES, small_backbone
from san_acmix_oracle import gradcheck_patchwise_functions
from san_acmix_oracle import use_unfold_attention as use_unfold_patchwise

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(),
                       reason='CUDA is not available'),
]

CUDA = torch.device('cuda')
# float64: the same tolerances as the CPU tests against the oracles
EXACT = dict(atol=1e-10, rtol=1e-9)
# float32, one operator: a few units of round-off of O(1) values
FP32 = dict(atol=1e-5, rtol=1e-4)
FP32_GRAD = dict(atol=1e-4, rtol=1e-4)
TOY_CONFIGS = sorted((REPO_ROOT / 'configs' / 'toy').glob('*.py'))


@pytest.fixture(autouse=True)
def no_tf32():
    """float32 products in float32 (TF32 rounds them to 10 bits)."""
    saved = (torch.backends.cuda.matmul.allow_tf32,
             torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    yield
    (torch.backends.cuda.matmul.allow_tf32,
     torch.backends.cudnn.allow_tf32) = saved


def on(device, *tensors):
    """Leaf copies of ``tensors`` on ``device`` that require gradients."""
    return [t.detach().to(device).requires_grad_() for t in tensors]


def value_and_grads(fn, inputs, grad):
    """``fn(*inputs)`` and the gradients of its inputs for the output
    gradient ``grad``, all on the CPU."""
    out = fn(*inputs)
    grads = torch.autograd.grad(out, inputs, grad.to(out))
    return [out.detach().cpu()] + [g.cpu() for g in grads]


def assert_all_close(got, expected, **tolerance):
    for index, (a, b) in enumerate(zip(got, expected)):
        torch.testing.assert_close(a.to(b.dtype), b, msg=f'tensor {index}',
                                   **tolerance)


# ---------------------------------------------------------------------------
# sliding-window attention (ResNet-ACmix)
# ---------------------------------------------------------------------------
@pytest.mark.parametrize('shape,stride,chunk_logits', [
    ((2, 2, 8, 14, 14), 1, None),
    ((1, 3, 4, 15, 9), 2, None),  # odd sizes
    ((2, 1, 4, 4, 5), 1, None),   # the smallest maps reflection allows
    ((1, 2, 6, 23, 30), 1, None),  # several blocks, partial last ones
    ((1, 1, 40, 17, 12), 1, None),  # the block size of larger heads
    ((3, 2, 4, 21, 19), 3, 1),    # one sample a chunk
])
def test_sliding_window_attention(monkeypatch, shape, stride, chunk_logits):
    """Values and gradients (projections, encoding, rate) on CUDA: in
    float64 equal to the unfold oracle's, in float32 to the CPU's."""
    if chunk_logits:
        monkeypatch.setattr(sliding_acmix, '_CHUNK_LOGITS', chunk_logits)
    torch.manual_seed(0)
    batch, heads, d, height, width = shape
    qkv = torch.randn(batch, 3 * heads, d, height, width, dtype=torch.float64)
    pe = torch.randn(1, d, height, width, dtype=torch.float64)
    rate = torch.tensor([0.7], dtype=torch.float64)

    def fast(*t):
        return sliding_window_attention(*t[:2], 7, stride, 0.3, t[2])

    def oracle(*t):
        return t[2] * unfold_window_attention(*t[:2], 7, stride, 0.3)

    inputs = (qkv, pe, rate)
    grad = torch.randn_like(oracle(*inputs))
    expected = value_and_grads(oracle, on('cpu', *inputs), grad)
    assert_all_close(value_and_grads(fast, on(CUDA, *inputs), grad),
                     expected, **EXACT)
    inputs32 = [t.float() for t in inputs]
    cpu = value_and_grads(fast, on('cpu', *inputs32), grad)
    cuda = value_and_grads(fast, on(CUDA, *inputs32), grad)
    assert_all_close(cuda, cpu, **FP32_GRAD)
    assert_all_close(cuda, expected, **FP32_GRAD)


def test_sliding_window_attention_gradcheck():
    torch.manual_seed(0)
    kwargs = dict(dtype=torch.float64, device=CUDA, requires_grad=True)
    qkv = torch.randn(1, 6, 2, 6, 5, **kwargs)
    pe = torch.randn(1, 2, 6, 5, **kwargs)
    rate = torch.tensor([-1.3], **kwargs)
    for stride in (1, 2):
        assert torch.autograd.gradcheck(
            lambda *t: sliding_window_attention(*t[:2], 7, stride, 0.5,
                                                t[2]), (qkv, pe, rate))


@pytest.mark.parametrize('stride,recompute', [(1, True), (2, True),
                                              (2, False)])
def test_sliding_acmix_module(stride, recompute):
    """The whole operator in training (projections recomputed in the
    backward pass or kept): output and every parameter gradient on CUDA, in
    float64 against the unfold oracle on the CPU, in float32 against the
    CPU."""
    torch.manual_seed(0)
    ours = SlidingACmix(16, 32, stride=stride, recompute=recompute).train()
    x = torch.randn(2, 16, 13, 11)
    results = {}
    for name, module, dtype, device in (
            ('oracle', use_unfold_sliding(copy.deepcopy(ours)),
             torch.float64, 'cpu'),
            ('cuda64', copy.deepcopy(ours), torch.float64, CUDA),
            ('cpu32', copy.deepcopy(ours), torch.float32, 'cpu'),
            ('cuda32', copy.deepcopy(ours), torch.float32, CUDA)):
        module.to(device, dtype)
        inp = x.to(device, dtype).requires_grad_()
        out = module(inp)
        weight = torch.linspace(-1, 1, out.numel()).view(out.shape)
        grads = torch.autograd.grad((out * weight.to(out)).sum(),
                                    (inp, *module.parameters()))
        results[name] = [out.detach().cpu()] + [g.cpu() for g in grads]
    expected_shape = (2, 32, 7, 6) if stride == 2 else (2, 32, 13, 11)
    assert results['oracle'][0].shape == expected_shape
    assert_all_close(results['cuda64'], results['oracle'], **EXACT)
    assert_all_close(results['cuda32'], results['cpu32'], **FP32_GRAD)


# ---------------------------------------------------------------------------
# patchwise attention (SAN-ACmix)
# ---------------------------------------------------------------------------
@pytest.mark.parametrize('piece', [None, 1])
def test_patchwise_functions(monkeypatch, piece):
    """window_projection and patchwise_aggregation: values and gradients on
    CUDA equal the CPU's (float64 and float32), the whole batch at once or
    one row a piece (their forward passes against the oracle: see
    test_patchwise_acmix_module)."""
    if piece:
        monkeypatch.setattr(patchwise_acmix, '_PIECE_ELEMENTS', piece)
    torch.manual_seed(0)
    double = dict(dtype=torch.float64)
    projection_inputs = (torch.randn(2, 3, 9, 10, **double),  # k = 3
                         torch.randn(27, **double), torch.randn(27, **double),
                         torch.randn(4, 27, **double))
    aggregation_inputs = (torch.randn(2, 2, 7, 8, **double),
                          torch.randn(2, 6, 9, 10, **double),
                          torch.randn(18, 2, **double),
                          torch.randn(18, **double))
    for fn, inputs in ((window_projection, projection_inputs),
                       (patchwise_aggregation, aggregation_inputs)):

        def call(*t):
            return fn(*t, 3)

        grad = torch.randn_like(call(*inputs))
        expected = value_and_grads(call, on('cpu', *inputs), grad)
        assert_all_close(value_and_grads(call, on(CUDA, *inputs), grad),
                         expected, **EXACT)
        inputs32 = [t.float() for t in inputs]
        assert_all_close(value_and_grads(call, on(CUDA, *inputs32), grad),
                         value_and_grads(call, on('cpu', *inputs32), grad),
                         **FP32_GRAD)


def test_patchwise_functions_gradcheck(monkeypatch):
    """Both functions on CUDA, one row a piece: the float64 oracle of
    their gradients."""
    monkeypatch.setattr(patchwise_acmix, '_PIECE_ELEMENTS', 1)
    gradcheck_patchwise_functions(CUDA)


def _patchwise_and_oracle():
    torch.manual_seed(0)
    ours = PatchwiseACmix(16, 32, 7)
    for norm in (ours.attn_norm1, ours.attn_norm2):
        # statistics and affine maps away from their defaults
        norm.running_mean.uniform_(-1, 1)
        norm.running_var.uniform_(0.5, 2)
        norm.weight.data.uniform_(0.5, 1.5)
        norm.bias.data.uniform_(-0.5, 0.5)
    return ours, use_unfold_patchwise(copy.deepcopy(ours))


@pytest.mark.parametrize('mode', ['train', 'eval'])
def test_patchwise_acmix_module(mode):
    """The whole operator: output, gradients of the input and of every
    parameter, and the running statistics after the step, on CUDA in
    float64 against the unfold oracle on the CPU, in float32 against the
    CPU."""
    ours, oracle = _patchwise_and_oracle()
    x = torch.randn(2, 16, 11, 9)
    results = {}
    for name, module, dtype, device in (
            ('oracle', oracle, torch.float64, 'cpu'),
            ('cuda64', copy.deepcopy(ours), torch.float64, CUDA),
            ('cpu32', copy.deepcopy(ours), torch.float32, 'cpu'),
            ('cuda32', copy.deepcopy(ours), torch.float32, CUDA)):
        module.to(device, dtype).train(mode == 'train')
        inp = x.to(device, dtype).requires_grad_()
        out = module(inp)
        grads = torch.autograd.grad(out.sin().sum(),
                                    (inp, *module.parameters()))
        results[name] = [t.detach().cpu()
                         for t in (out, *grads, *module.buffers())]
    assert results['oracle'][0].shape == (2, 32, 11, 9)
    assert_all_close(results['cuda64'], results['oracle'], **EXACT)
    assert_all_close(results['cuda32'], results['cpu32'], **FP32_GRAD)


# ---------------------------------------------------------------------------
# backbones
# ---------------------------------------------------------------------------
def _backbone_step(model, x, device, dtype):
    """Outputs, the gradient of every parameter and the buffers (norm
    statistics) after one training forward and backward pass, on the
    CPU."""
    model = copy.deepcopy(model).to(device, dtype).train()
    outs = model(x.to(device, dtype))
    gen = torch.Generator().manual_seed(1)
    loss = sum((out * torch.randn(out.shape, generator=gen).to(out)).mean()
               for out in outs)
    loss.backward()
    params = list(model.named_parameters())
    missing = [name for name, p in params if p.grad is None]
    assert not missing, f'no gradient for {missing}'
    return ([out.detach().cpu() for out in outs],
            torch.cat([p.grad.flatten() for _, p in params]).cpu(),
            [b.cpu() for b in model.buffers() if b.is_floating_point()])


def _relative_error(got, expected):
    return ((got.to(expected) - expected).norm() / expected.norm()).item()


@pytest.mark.parametrize('name', SMALL_BACKBONES)
def test_backbone_forward_backward(name):
    """Outputs, all parameter gradients and the norms' running statistics
    of a training step on CUDA: float64 equal to the CPU's. float32: the
    relative error of each output and of the whole gradient vector, held
    far above round-off but far below any real difference (the batch
    statistics of small late maps amplify round-off through the depth:
    bf16's, at 1-2 units per layer, came out 10-100x larger at the last
    outputs and 100-300x on the gradients; cuDNN may also pick Winograd or
    FFT convolutions, a little less exact than the CPU's)."""
    model, shape = small_backbone(name)
    x = torch.randn(shape)
    cpu = _backbone_step(model, x, 'cpu', torch.float64)
    cuda = _backbone_step(model, x, CUDA, torch.float64)
    assert_all_close(cuda[0], cpu[0], **EXACT)
    torch.testing.assert_close(cuda[1], cpu[1], **EXACT)
    assert_all_close(cuda[2], cpu[2], **EXACT)
    cpu = _backbone_step(model, x, 'cpu', torch.float32)
    cuda = _backbone_step(model, x, CUDA, torch.float32)
    for got, expected in zip(cuda[0], cpu[0]):
        assert _relative_error(got, expected) < 1e-3
    assert _relative_error(cuda[1], cpu[1]) < 1e-2


# ---------------------------------------------------------------------------
# AMP train steps of the toy configs
# ---------------------------------------------------------------------------
def amp_train_steps(config: Path, dtype: str, work_dir: Path,
                    steps: int = 3) -> list:
    """``steps`` train steps of ``config``'s model on its train data with
    the optimizer wrapper ``tools/train.py --amp`` sets up (``dtype``
    autocast, dynamic loss scale), as mmengine's ``train_step`` runs them;
    returns per step whether all unscaled gradients were finite, after
    checking that the loss was and that every parameter got a gradient."""
    cfg = load_config(str(config), str(work_dir))
    cfg.optim_wrapper.type = 'AmpOptimWrapper'
    cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    cfg.optim_wrapper.dtype = dtype
    # one logger and visualizer per run, even when two start in the same
    # second (their default names are the config's and the time's)
    cfg.experiment_name = f'{config.stem}_{dtype}_{work_dir.name}'
    runner = build_runner(cfg)
    model = runner.model
    optim_wrapper = runner.build_optim_wrapper(cfg.optim_wrapper)
    loader = runner.build_dataloader(cfg.train_dataloader)
    model.train()
    finite = []
    for _, data in zip(range(steps), loader):
        with optim_wrapper.optim_context(model):
            data = model.data_preprocessor(data, True)
            losses = model._run_forward(data, mode='loss')
        loss, _ = model.parse_losses(losses)
        assert loss.dtype == torch.float32 and torch.isfinite(loss), losses
        optim_wrapper.backward(loss)
        # unscaled before the step (GradScaler's documented way to look at
        # gradients), which the step then does not repeat
        optim_wrapper.loss_scaler.unscale_(optim_wrapper.optimizer)
        params = [(n, p) for n, p in model.named_parameters()
                  if p.requires_grad]
        missing = [n for n, p in params if p.grad is None]
        assert not missing, f'no gradient for {missing}'
        assert all(p.grad.dtype == torch.float32 for _, p in params)
        finite.append(all(bool(torch.isfinite(p.grad).all())
                          for _, p in params))
        optim_wrapper.step()
        optim_wrapper.zero_grad()
    assert len(finite) == steps
    assert all(torch.isfinite(p).all() for p in model.parameters())
    return finite


@pytest.mark.parametrize('dtype', ['bfloat16', 'float16'])
@pytest.mark.parametrize('config', TOY_CONFIGS, ids=lambda p: p.stem)
def test_amp_train_steps(toy_workspace, tmp_path, monkeypatch, config,
                         dtype):
    """bf16: every step's gradients are finite. fp16: the dynamic loss
    scale may overflow at first (its step is then skipped and the scale
    halved), so at least one step of three has finite gradients. The
    detectors' mmcv ops (no bf16 CUDA kernels: ``sigmoid_focal_loss``,
    ``RoIAlign``) run in float32 (:mod:`mmacmix.engine.patches`)."""
    monkeypatch.chdir(toy_workspace)  # the configs read data/toy
    finite = amp_train_steps(config, dtype, tmp_path)
    if dtype == 'bfloat16':
        assert all(finite), finite
    else:
        assert any(finite), finite


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
def test_mmcv_ops_low_precision(dtype):
    """mmcv's CUDA RoIAlign, sigmoid focal loss and NMS of bf16 or fp16
    inputs: the float32 results of the same inputs (features and their
    gradient rounded once to their dtype; the loss in float32)."""
    from mmcv.ops import RoIAlign, nms, sigmoid_focal_loss
    gen = torch.Generator().manual_seed(0)
    feats = torch.randn(2, 8, 16, 20, generator=gen)
    corners = torch.rand(10, 2, generator=gen) * 24
    rois = torch.cat([torch.randint(0, 2, (10, 1), generator=gen).float(),
                      corners,
                      corners + 2 + torch.rand(10, 2, generator=gen) * 14], 1)
    layer = RoIAlign((7, 7), spatial_scale=0.5, sampling_ratio=2)
    low, = on(CUDA, feats.to(dtype))
    exact, = on(CUDA, feats.to(dtype).float())
    out = layer(low, rois.to(CUDA))
    expected = layer(exact, rois.to(CUDA))
    assert out.dtype == dtype
    grad = torch.randn(out.shape, generator=gen).to(CUDA, dtype)
    out.backward(grad)
    expected.backward(grad.float())
    assert low.grad.dtype == dtype
    torch.testing.assert_close(out, expected.to(dtype), rtol=0, atol=0)
    # CUDA's backward adds with atomics, in any order: one unit apart
    torch.testing.assert_close(low.grad, exact.grad.to(dtype),
                               rtol=torch.finfo(dtype).eps, atol=1e-5)

    logits = torch.randn(32, 5, generator=gen) * 3
    target = torch.randint(0, 5, (32, ), generator=gen).to(CUDA)
    low, = on(CUDA, logits.to(dtype))
    exact, = on(CUDA, logits.to(dtype).float())
    loss = sigmoid_focal_loss(low, target, 2.0, 0.25, None, 'mean')
    expected = sigmoid_focal_loss(exact, target, 2.0, 0.25, None, 'mean')
    assert loss.dtype == torch.float32
    loss.backward()
    expected.backward()
    assert low.grad.dtype == dtype
    torch.testing.assert_close(loss, expected, **FP32)
    torch.testing.assert_close(low.grad, exact.grad.to(dtype), rtol=0,
                               atol=0)

    boxes = torch.randint(0, 200, (60, 2), generator=gen).float()
    boxes = torch.cat([boxes, boxes + 8 + torch.randint(
        0, 40, (60, 2), generator=gen)], 1).to(CUDA)
    scores = (torch.randperm(60, generator=gen).float() / 64).to(CUDA)
    dets, keep = nms(boxes.to(dtype), scores.to(dtype), 0.5)
    assert dets.dtype == dtype
    assert torch.equal(keep, nms(boxes, scores, 0.5)[1])
