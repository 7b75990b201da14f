"""The faster forms of the ACmix layers compute what the plain forms do, and
the layers trace under torch.compile without graph breaks.

* Folded convolution path (``ACmixConvPath(fold_fc=True)``): ``fc`` and
  ``dep_conv`` composed into one group convolution. Same outputs and
  gradients (inputs and parameters) as ``fc`` then ``dep_conv`` within fp32
  round-off, and the FLOPs tool counts both as the paper's formulation.
* PVT-ACmix with the folded path (full-resolution keys and values; with
  one head, a depthwise convolution per map) against the plain one (``fc``
  of the keys and values at the reduced resolution).
* The convolution path's ``rate`` and ``bias`` (how ACmix's mixing is folded
  into its kernels and bias) and ``fc``'s bias as the convolution's bias
  plus a frame.
"""
import pytest
import torch
import torch._dynamo as dynamo

from mmacmix.analysis.complexity import complexity
from mmacmix.layers import SlidingACmix, WindowACmix
from mmacmix.layers.acmix import ACmixConvPath, paper_formulation
from mmacmix.layers.fast_forms import sum_over_maps
from mmacmix.layers.sr_acmix import SpatialReductionACmix


def perturb(module, seed=0):
    """Random values for every parameter (the shift kernels included), so
    that no equality comes from the initialisation."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    return module


def outputs_and_grads(module, x):
    """Output and gradients (input, parameters), in float64: the two forms
    differ only by round-off, which float64 makes negligible."""
    module.double()
    x = x.double().requires_grad_()
    module.zero_grad()
    out = module(x)
    out.backward(torch.randn(out.shape, generator=torch.Generator()
                             .manual_seed(1), dtype=out.dtype))
    grads = [x.grad] + [p.grad for p in module.parameters()]
    return out.detach(), grads


def assert_same(plain, folded, x):
    out_a, grads_a = outputs_and_grads(plain, x)
    out_b, grads_b = outputs_and_grads(folded, x)
    torch.testing.assert_close(out_b, out_a, rtol=1e-9, atol=1e-9)
    for a, b in zip(grads_a, grads_b):
        torch.testing.assert_close(b, a, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize('heads, head_dims, stride, bias, in_maps', [
    (1, 8, 1, True, None),
    (2, 4, 2, True, None),
    (3, 4, 1, False, None),
    (4, 4, 2, False, 6),  # SAN-ACmix: 6 maps for 4 heads
])
def test_folded_conv_path_equals_plain(heads, head_dims, stride, bias,
                                       in_maps):
    """Odd sizes, both strides, with and without fc bias (whose folded form
    must respect the zero-padded border of fc's output)."""
    plain = perturb(ACmixConvPath(heads, head_dims, stride=stride,
                                  fc_bias=bias, in_maps=in_maps,
                                  fold_fc=False))
    folded = ACmixConvPath(heads, head_dims, stride=stride, fc_bias=bias,
                           in_maps=in_maps, fold_fc=True)
    folded.load_state_dict(plain.state_dict())
    maps = in_maps or 3 * heads
    # d-major channels-last, as the callers project them, and a plain
    # contiguous layout
    # sizes with an inside (its fc bias: the convolution's bias and a
    # frame) and without one
    for height, width in ((9, 11), (2, 5), (1, 1)):
        d_major = torch.randn(2, height, width, head_dims,
                              maps).permute(0, 4, 3, 1, 2)
        assert_same(plain, folded, d_major)
        assert_same(plain, folded,
                    torch.randn(2, maps, head_dims, height, width))


@pytest.mark.parametrize('heads, bias', [(1, True), (2, True), (1, False)])
def test_sum_over_maps_equals_folded(heads, bias):
    """The one-head form (a depthwise convolution per map, the maps given
    apart) computes the folded group convolution, rate, extra bias and
    all gradients included; for any number of heads, although the layers
    use it with one."""
    path = perturb(ACmixConvPath(heads, 4, fc_bias=bias)).double()
    qkv = torch.randn(2, 3 * heads, 4, 7, 9, dtype=torch.float64)
    rate = torch.tensor([0.3], dtype=torch.float64, requires_grad=True)
    extra = torch.randn(4 * heads, dtype=torch.float64, requires_grad=True)
    grad = torch.randn(2, 4 * heads, 7, 9, dtype=torch.float64)
    params = [rate, extra, *path.parameters()]
    results = []
    for out in (sum_over_maps(path, qkv.unbind(1), rate, extra),
                path(qkv, rate, extra)):
        results.append((out, ) + torch.autograd.grad(out, params, grad))
    for got, expected in zip(*results):
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize('fold', [False, True])
def test_conv_path_rate_scales_the_output(fold):
    """``conv(qkv, rate, bias)`` (rate and bias go into the convolution's
    kernels and bias) is ``rate * conv(qkv) + bias``, the gradients of the
    rate and the bias included."""
    path = perturb(ACmixConvPath(2, 4, fc_bias=True, fold_fc=fold)).double()
    qkv = torch.randn(2, 6, 4, 7, 9, dtype=torch.float64)
    rate = torch.tensor([-0.7], dtype=torch.float64, requires_grad=True)
    bias = torch.randn(8, dtype=torch.float64, requires_grad=True)
    grad = torch.randn(2, 8, 7, 9, dtype=torch.float64)
    results = []
    for out in (path(qkv, rate, bias),
                rate * path(qkv) + bias[:, None, None]):
        results.append((out, ) + torch.autograd.grad(
            out, [rate, bias, *path.parameters()], grad))
    for scaled, expected in zip(*results):
        torch.testing.assert_close(scaled, expected, rtol=1e-12, atol=1e-12)


def test_fold_is_chosen_by_heads():
    """Folding is the default up to 5 heads (faster there on CPU)."""
    assert [ACmixConvPath(h, 4).fold_fc for h in (1, 3, 5, 6, 12)] == [
        True, True, True, False, False]


@pytest.mark.parametrize('heads', [1, 2])
@pytest.mark.parametrize('sr_ratio, size', [(1, (7, 9)), (2, (9, 11)),
                                            (4, (13, 10))])
def test_pvt_block_folded_equals_plain(sr_ratio, size, heads):
    """PVT-ACmix's folded path upsamples the keys and values before the
    convolution path (with one head, each apart: a depthwise convolution
    per map); the plain one runs fc on them at the reduced resolution.
    Same output and gradients, odd sizes included."""
    plain = perturb(SpatialReductionACmix(16, heads, sr_ratio)).eval()
    folded = SpatialReductionACmix(16, heads, sr_ratio).eval()
    folded.load_state_dict(plain.state_dict())
    plain.conv.fold_fc, folded.conv.fold_fc = False, True
    assert_same(plain, folded, torch.randn(2, *size, 16))


def test_flops_count_the_paper_formulation_either_way():
    op = SpatialReductionACmix(16, 1, 2)
    x = (torch.randn(1, 12, 12, 16), )
    folded_count = complexity(op, x)
    assert op.conv.fold_fc  # restored after counting
    with paper_formulation(op):
        assert not op.conv.fold_fc
        assert complexity(op, x) == folded_count


@pytest.mark.parametrize('name', ['window', 'window_padded', 'sr', 'sliding'])
def test_layers_compile_without_graph_breaks(name):
    """torch.compile captures each ACmix operator as one graph (shifted and
    padded windows, spatial reduction with the folded path, the sliding
    window attention's custom autograd function), and the compiled module
    (AOT autograd, no C++ compiler needed) gives the eager outputs and
    gradients."""
    torch.manual_seed(0)
    op, x = {
        'window': (WindowACmix(16, 2, 7, 3), torch.randn(2, 14, 14, 16)),
        'window_padded': (WindowACmix(16, 2, 7, 3),
                          torch.randn(2, 15, 17, 16)),
        'sr': (SpatialReductionACmix(16, 1, 2), torch.randn(2, 9, 10, 16)),
        'sliding': (SlidingACmix(8, 16, num_heads=4, stride=2),
                    torch.randn(2, 8, 11, 13)),
    }[name]
    perturb(op)
    dynamo.reset()
    explanation = dynamo.explain(op)(x)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert explanation.graph_count == 1
    eager = outputs_and_grads(op, x)
    compiled = outputs_and_grads(torch.compile(op, backend='aot_eager'), x)
    torch.testing.assert_close(compiled[0], eager[0])
    for a, b in zip(eager[1], compiled[1]):
        torch.testing.assert_close(b, a)
