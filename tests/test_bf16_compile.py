"""bf16 autocast on the CPU and torch.compile, for every backbone family
(SwinACmix, PVTACmix, ResNetACmix, SANACmix); mmcv's NMS, RoIAlign and
sigmoid focal loss under bf16 (run in float32 by
:mod:`mmacmix.engine.patches`) and the toy detectors that use them.

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
import importlib
import math
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
import torch._dynamo as dynamo
import torch.nn.functional as F
from mmcv.ops import RoIAlign, batched_nms, nms, sigmoid_focal_loss
from mmcv.ops.focal_loss import SigmoidFocalLossFunction
from mmcv.ops.nms import NMSop
from mmcv.ops.roi_align import RoIAlignFunction

import mmacmix  # noqa: F401  (registers the models, fixes torchvision)
from mmacmix.analysis.benchmark import Entry
from mmacmix.layers import SlidingACmix, WindowACmix
from mmacmix.layers.patchwise_acmix import PatchwiseACmix
from mmacmix.layers.sr_acmix import SpatialReductionACmix

from helpers import REPO_ROOT, SMALL_BACKBONES, small_backbone, tool_env


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


# mmcv's compiled ops under bf16 autocast (mmacmix.engine.patches)


def unpatched(function):
    """mmcv's own autograd function ``function``, without the float32
    wrappers of :mod:`mmacmix.engine.patches`."""
    methods = {
        name: staticmethod(getattr(function, name).__wrapped__)
        for name in ('forward', 'backward') if hasattr(
            getattr(function, name), '__wrapped__')
    }
    return type(f'Unpatched{function.__name__}', (torch.autograd.Function, ),
                methods)


def nms_inputs(num=60):
    """Clustered boxes with integer corners below 256 (exact in bf16) and
    distinct scores that are exact in bf16."""
    gen = torch.Generator().manual_seed(0)
    centres = torch.randint(20, 200, (6, 2), generator=gen)
    xy = centres[torch.randint(0, 6, (num, ), generator=gen)] + torch.randint(
        -6, 7, (num, 2), generator=gen)
    wh = torch.randint(8, 40, (num, 2), generator=gen)
    boxes = torch.cat([xy - wh // 2, xy + wh // 2], 1).float()
    scores = torch.randperm(num, generator=gen).float() / 64  # 6 bits
    return boxes, scores


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
def test_nms_low_precision(dtype):
    """NMS of bf16 or fp16 boxes and scores keeps the boxes float32 keeps
    (mmcv's kernel reads float32 boxes only), and returns the caller's
    boxes and scores in their dtype."""
    boxes, scores = nms_inputs()
    low_boxes, low_scores = boxes.to(dtype), scores.to(dtype)
    assert torch.equal(low_boxes.float(), boxes)  # exact inputs
    expected, keep = nms(boxes, scores, 0.5)
    assert 0 < len(keep) < len(boxes)  # boxes were suppressed
    with torch.autocast('cpu', dtype=dtype):
        dets, got = nms(low_boxes, low_scores, 0.5)
        mixed = nms(boxes, low_scores, 0.5)[1]  # float32 boxes
        scored = nms(low_boxes, low_scores, 0.5, score_threshold=0.2,
                     max_num=5)[1]
    assert torch.equal(got, keep)
    assert dets.dtype == dtype
    assert torch.equal(dets.float(), expected)
    assert torch.equal(mixed, keep)
    assert torch.equal(scored, nms(boxes, scores, 0.5, score_threshold=0.2,
                                   max_num=5)[1])


def test_nms_float32_unchanged():
    """float32 boxes reach mmcv's NMS as they are."""
    boxes, scores = nms_inputs()
    expected = unpatched(NMSop).apply(boxes, scores, 0.5, 0, 0, -1)
    assert torch.equal(NMSop.apply(boxes, scores, 0.5, 0, 0, -1), expected)
    assert nms(boxes, scores, 0.5)[0].dtype == torch.float32


@pytest.mark.compiled_mmcv
def test_compiled_nms_reads_float32_boxes_only():
    """Why NMS runs low-precision boxes in float32: compiled mmcv's CPU
    kernel refuses bf16 and fp16 boxes; float64 ones reach it and are
    refused as before (mmacmix.ops computes all of them)."""
    boxes, scores = nms_inputs()
    for dtype in (torch.bfloat16, torch.float16):
        with pytest.raises(RuntimeError, match='expected scalar type Float'):
            unpatched(NMSop).apply(boxes.to(dtype), scores.to(dtype), 0.5,
                                   0, 0, -1)
    with pytest.raises(RuntimeError, match='expected scalar type Float'):
        nms(boxes.double(), scores.double(), 0.5)


def coco_detections(dtype):
    """What a COCO detector's head gives ``batched_nms``: 50 objects in an
    800x1333 image, of 80 classes, with 20 overlapping boxes each, in
    ``dtype`` (its priors and box deltas are in the autocast dtype)."""
    gen = torch.Generator().manual_seed(0)
    objects, per_object = 50, 20
    centres = torch.rand(objects, 2, generator=gen) * torch.tensor(
        [1333., 800.])
    sizes = 30 + torch.rand(objects, 2, generator=gen) * 200
    num = objects * per_object
    xy = centres.repeat_interleave(per_object, 0) + 5 * torch.randn(
        num, 2, generator=gen)
    wh = sizes.repeat_interleave(per_object, 0) * (
        1 + 0.1 * torch.randn(num, 2, generator=gen))
    boxes = torch.cat([xy - wh / 2, xy + wh / 2], 1).clamp(min=0)
    scores = torch.rand(num, generator=gen)
    labels = torch.randint(0, 80, (objects, ),
                           generator=gen).repeat_interleave(per_object)
    return boxes.to(dtype), scores.to(dtype), labels


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
def test_batched_nms_low_precision(dtype):
    """``batched_nms`` of bf16 or fp16 detections (mmdet's RPN, RetinaNet
    and RoI heads under autocast) keeps what float32 keeps: its class
    offsets (up to 1e5 here) in bf16 would round boxes to 512 px, in fp16
    overflow. The boxes and scores it returns are the caller's."""
    boxes, scores, labels = coco_detections(dtype)
    cfg = dict(type='nms', iou_threshold=0.5)
    expected, keep = batched_nms(boxes.float(), scores.float(), labels, cfg)
    assert len(keep) < len(boxes) / 10  # the duplicates are gone
    # mmcv's own batched_nms (with NMS in float32) kept most of them
    original = batched_nms.__wrapped__(boxes, scores, labels, cfg)[1]
    assert len(original) > 2 * len(keep)
    with torch.autocast('cpu', dtype=dtype):
        dets, got = batched_nms(boxes, scores, labels, cfg)
    assert torch.equal(got, keep)
    assert dets.dtype == dtype
    assert torch.equal(dets.float(), expected)
    # float32 boxes, low-precision scores: the dtype mmcv gives (float32)
    dets = batched_nms(boxes.float(), scores, labels, cfg)[0]
    assert dets.dtype == torch.float32


def test_batched_nms_float32_unchanged():
    """float32 detections reach mmcv's ``batched_nms`` as they are."""
    boxes, scores, labels = coco_detections(torch.float32)
    cfg = dict(type='nms', iou_threshold=0.5)
    for got, expected in zip(
            batched_nms(boxes, scores, labels, cfg),
            batched_nms.__wrapped__(boxes, scores, labels, cfg)):
        assert torch.equal(got, expected)


BINDS_BATCHED_NMS = ('mmdet.models.dense_heads.base_dense_head',
                     'mmdet.models.dense_heads.rpn_head',
                     'mmdet.models.layers.bbox_nms', 'mmcv.ops',
                     'mmcv.ops.nms')


def test_mmdet_binds_float32_batched_nms():
    """mmdet's modules bind ``batched_nms`` at import: they get the
    wrapper whether they are imported after ``mmacmix`` (here) or before
    it (a fresh process)."""
    wrapped = batched_nms.__wrapped__  # mmcv's
    for name in BINDS_BATCHED_NMS:
        module = importlib.import_module(name)
        assert module.batched_nms.__wrapped__ is wrapped, name
    # torchvision (which mmdet imports) needs mmacmix's fix to import here:
    # its module alone, loaded from its file (not the package's fixes)
    fix = 'mmacmix.engine.patches.torchvision'
    path = REPO_ROOT / 'mmacmix' / 'engine' / 'patches' / 'torchvision.py'
    code = (f'import importlib, importlib.util, sys\n'
            f'spec = importlib.util.spec_from_file_location("{fix}", '
            f'"{path}")\n'
            f'fix = sys.modules["{fix}"] = importlib.util.module_from_spec('
            f'spec)\n'
            f'spec.loader.exec_module(fix)\n'
            f'fix.apply()\n'
            f'from mmdet.models.dense_heads import rpn_head\n'
            f'assert "mmacmix" not in sys.modules\n'
            f'assert not hasattr(rpn_head.batched_nms, "__wrapped__")\n'
            f'import mmacmix\n'
            f'wrapped = importlib.import_module("mmcv.ops.nms")'
            f'.batched_nms.__wrapped__\n'
            f'for name in {BINDS_BATCHED_NMS!r}:\n'
            f'    module = importlib.import_module(name)\n'
            f'    assert module.batched_nms.__wrapped__ is wrapped, name\n'
            f'print("wrapped")')
    proc = subprocess.run([sys.executable, '-c', code], env=tool_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and 'wrapped' in proc.stdout, proc.stderr


def roi_align_inputs():
    gen = torch.Generator().manual_seed(0)
    feats = torch.randn(2, 8, 16, 20, generator=gen)
    corners = torch.rand(10, 2, generator=gen) * 24
    sizes = 2 + torch.rand(10, 2, generator=gen) * 14
    rois = torch.cat([torch.randint(0, 2, (10, 1), generator=gen).float(),
                      corners, corners + sizes], 1)
    grad = torch.randn(10, 8, 7, 7, generator=gen)
    return feats, rois, grad


@pytest.mark.parametrize('pool_mode', ['avg', 'max'])
@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
def test_roi_align_low_precision(dtype, pool_mode):
    """RoIAlign of bf16 or fp16 features (mmdet's RoI extractors under
    autocast): the float32 result of the same features, rounded once to
    their dtype; the features' gradient likewise, in their dtype."""
    feats, rois, grad = roi_align_inputs()
    layer = RoIAlign((7, 7), spatial_scale=0.5, sampling_ratio=2,
                     pool_mode=pool_mode)
    low = feats.to(dtype).requires_grad_()
    with torch.autocast('cpu', dtype=dtype):
        out = layer(low, rois)
    assert out.dtype == dtype
    (out.float() * grad).sum().backward()
    assert low.grad is not None and low.grad.dtype == dtype

    exact = low.detach().float().requires_grad_()
    expected = layer(exact, rois)
    expected.backward(grad.to(dtype).float())  # the gradient out reaches
    assert expected.dtype == torch.float32
    torch.testing.assert_close(out, expected.to(dtype), rtol=0, atol=0)
    torch.testing.assert_close(low.grad, exact.grad.to(dtype), rtol=0,
                               atol=0)
    # and within bf16's round-off of the float32 features' result
    assert relative_error(out, layer(feats, rois)) < 1e-2


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_roi_align_float32_unchanged(dtype):
    """float32 and float64 features go through mmcv's own RoIAlign as they
    are: the same output and gradient, bit for bit, in their dtype."""
    feats, rois, grad = roi_align_inputs()
    results = []
    for function in (RoIAlignFunction, unpatched(RoIAlignFunction)):
        x = feats.to(dtype).requires_grad_()
        out = function.apply(x, rois.to(dtype), (7, 7), 0.5, 2, 'avg', True)
        out.backward(grad.to(dtype))
        results.append((out, x.grad))
        assert out.dtype == x.grad.dtype == dtype
    assert not hasattr(results[0][0].grad_fn, 'mmacmix_dtype')
    for got, expected in zip(*results):
        assert torch.equal(got, expected)


def reference_focal_loss_kernels(seen):
    """mmcv's CUDA focal loss kernels (it has none for the CPU) in torch,
    with their signature; ``seen`` gets the dtypes they are given."""

    def loss(input, target, weight, gamma, alpha):
        p = input.sigmoid()
        one_hot = F.one_hot(target, input.size(1)).to(input)
        pt = p * one_hot + (1 - p) * (1 - one_hot)
        at = alpha * one_hot + (1 - alpha) * (1 - one_hot)
        out = -at * (1 - pt).pow(gamma) * pt.clamp_min(1e-12).log()
        return out * weight[target][:, None] if weight.numel() else out

    def forward(input, target, weight, output, gamma, alpha):
        seen.append(input.dtype)
        output.copy_(loss(input, target, weight, gamma, alpha))

    def backward(input, target, weight, grad_input, gamma, alpha):
        seen.append(input.dtype)
        with torch.enable_grad():
            x = input.detach().requires_grad_()
            grad_input.copy_(torch.autograd.grad(
                loss(x, target, weight, gamma, alpha).sum(), x)[0])

    return SimpleNamespace(sigmoid_focal_loss_forward=forward,
                           sigmoid_focal_loss_backward=backward)


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
def test_sigmoid_focal_loss_low_precision(monkeypatch, dtype):
    """mmcv's sigmoid focal loss (mmdet's FocalLoss on CUDA) of bf16 or fp16
    logits: mmcv's function and its kernels see float32 (the kernels are a
    torch stand-in here: mmcv has no CPU kernel; ``tests/test_cuda.py`` runs
    the real ones); the float32 loss of the same logits, and their gradient
    in their dtype. float32 logits reach the kernels as they are."""
    seen = []
    monkeypatch.setattr(importlib.import_module('mmcv.ops.focal_loss'),
                        'ext_module', reference_focal_loss_kernels(seen))
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(32, 5, generator=gen) * 3
    target = torch.randint(0, 5, (32, ), generator=gen)
    weight = torch.rand(5, generator=gen)
    for reduction, w in (('mean', None), ('none', weight)):
        low = logits.to(dtype).requires_grad_()
        with torch.autocast('cpu', dtype=dtype):
            loss = sigmoid_focal_loss(low, target, 2.0, 0.25, w.to(dtype)
                                      if w is not None else None, reduction)
        assert loss.dtype == torch.float32
        loss.sum().backward()
        assert low.grad is not None and low.grad.dtype == dtype
        assert seen == [torch.float32, torch.float32]
        seen.clear()

        exact = low.detach().float().requires_grad_()
        expected = sigmoid_focal_loss(exact, target, 2.0, 0.25, w.to(
            dtype).float() if w is not None else None, reduction)
        expected.sum().backward()
        torch.testing.assert_close(loss, expected, rtol=0, atol=0)
        torch.testing.assert_close(low.grad, exact.grad.to(dtype), rtol=0,
                                   atol=0)
        seen.clear()

    x = logits.clone().requires_grad_()
    fp32 = SigmoidFocalLossFunction.apply(x, target, 2.0, 0.25, None, 'mean')
    fp32.backward()
    assert seen == [torch.float32, torch.float32]
    assert not hasattr(fp32.grad_fn, 'mmacmix_dtype')
    assert x.grad.dtype == torch.float32


TOY_DETECTORS = ['mask_rcnn_swin_acmix_toy_coco',
                 'retinanet_pvt_acmix_toy_coco']


@pytest.mark.parametrize('name', TOY_DETECTORS)
def test_bf16_toy_detector(name):
    """A train step and an inference of a toy detector under bf16 autocast
    (as ``tools/train.py --amp`` on the CPU): a finite loss, a finite
    float32 gradient for every parameter, finite detections; Mask R-CNN's
    RoIAlign layers get bf16 features and give bf16 features back. At
    128x128 RetinaNet's P7 comes from a 2x2 map: from a 1x1 map torch
    2.13's bf16 CPU convolution leaves stale memory in its weight gradient
    at times (docs/faq.md)."""
    entry = Entry(str(REPO_ROOT / 'configs' / 'toy' / f'{name}.py'),
                  batch=1, shape=(128, 128), dtype='bf16')
    seen = []
    for layer in entry.model.modules():
        if isinstance(layer, RoIAlign):
            layer.register_forward_hook(
                lambda _, args, out: seen.append((args[0].dtype, out.dtype)))
    loss = entry.train_step()
    assert math.isfinite(loss)
    params = [(n, p) for n, p in entry.model.named_parameters()
              if p.requires_grad]
    missing = [n for n, p in params if p.grad is None]
    assert not missing, f'no gradient for {missing}'
    assert all(p.grad.dtype == torch.float32 and torch.isfinite(p.grad).all()
               for _, p in params)

    entry.infer()
    pred = entry.batches[False][1][0].pred_instances
    assert len(pred) > 0
    assert torch.isfinite(pred.bboxes.float()).all()
    assert torch.isfinite(pred.scores.float()).all()
    if 'mask_rcnn' in name:
        assert seen and set(seen) == {(torch.bfloat16, torch.bfloat16)}
        assert pred.masks.shape[-2:] == (128, 128)
