"""The ACmix operator (mmacmix.layers, torch alone): the decomposition of
the paper as exact identities, the mixing, padding and precision."""
import copy

import pytest
import torch
import torch.nn.functional as F

from mmacmix.layers import ACmixConvPath, MixingRates, WindowACmix


def shift(x, dy, dx):
    """out[..., y, x] = x[..., y + dy, x + dx], zero outside (a tensor
    shift, paper Sec. 4.3)."""
    height, width = x.shape[-2:]
    padded = F.pad(x, (1 + abs(dx), 1 + abs(dx), 1 + abs(dy), 1 + abs(dy)))
    top, left = 1 + abs(dy) + dy, 1 + abs(dx) + dx
    return padded[..., top:top + height, left:left + width]


def fc_maps(path, qkv):
    """``fc`` over the 3*heads axis: (B, head_dims, k*k, H, W)."""
    maps = torch.einsum('bsdhw,ks->bdkhw', qkv, path.fc.weight)
    if path.fc.bias is not None:
        maps = maps + path.fc.bias[:, None, None]
    return maps


def random_qkv(heads, head_dims, height=9, width=11, batch=2):
    return torch.randn(batch, 3 * heads, head_dims, height, width)


@pytest.mark.parametrize('kernel_size', [3, 5])
def test_dep_conv_starts_as_one_hot_shift_kernels(kernel_size):
    path = ACmixConvPath(2, 4, kernel_size)
    weight = path.dep_conv.weight
    assert weight.shape == (8, kernel_size**2, kernel_size, kernel_size)
    for k in range(kernel_size**2):
        expected = torch.zeros(kernel_size, kernel_size)
        expected[k // kernel_size, k % kernel_size] = 1
        assert torch.equal(weight[:, k], expected.expand(8, -1, -1))


@pytest.mark.parametrize('kernel_size', [3, 5])
def test_group_conv_with_shift_kernels_is_shift_and_sum(kernel_size):
    """Paper Sec. 4.3: the k x k group convolution with one-hot kernels is
    the sum of the k*k maps shifted by their kernel offsets."""
    heads, head_dims = 2, 3
    path = ACmixConvPath(heads, head_dims, kernel_size)
    maps = torch.randn(2, head_dims * kernel_size**2, 9, 11)  # d-major
    r = kernel_size // 2
    expected = []
    for d in range(head_dims):
        summed = sum(
            shift(maps[:, d * kernel_size**2 + k], k // kernel_size - r,
                  k % kernel_size - r) for k in range(kernel_size**2))
        expected += [summed] * heads  # output channel d * heads + j
    torch.testing.assert_close(
        path.dep_conv(maps), torch.stack(expected, 1), rtol=0, atol=1e-5)


@pytest.mark.parametrize('fc_bias', [True, False])
def test_conv_path_is_fc_then_shifted_sum(fc_bias):
    heads, head_dims, k = 3, 4, 3
    path = ACmixConvPath(heads, head_dims, k, fc_bias=fc_bias)
    assert (path.fc.bias is not None) == fc_bias
    qkv = random_qkv(heads, head_dims)
    maps = fc_maps(path, qkv)  # (B, d, k*k, H, W)
    summed = sum(
        shift(maps[:, :, i], i // k - 1, i % k - 1) for i in range(k * k))
    expected = summed.repeat_interleave(heads, dim=1)
    torch.testing.assert_close(path(qkv), expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize('dilation', [1, 2, 3])
@pytest.mark.parametrize('fold_fc', [True, False])
def test_conv_path_is_a_kxk_convolution_of_the_projections(fold_fc, dilation):
    """At its shift initialisation the convolution path is an ordinary
    k x k convolution of the q/k/v maps (the point of the paper): kernel
    tap (p, q) of output channel d*heads+j weighs projection map (s, d)
    with fc.weight[p*k+q, s]; the fc bias acts as a constant input map.
    Dilated, it is the dilated convolution, in both forms."""
    heads, head_dims, k = 2, 3, 3
    path = ACmixConvPath(heads, head_dims, k, fold_fc=fold_fc,
                         dilation=dilation)
    qkv = random_qkv(heads, head_dims)
    batch, _, _, height, width = qkv.shape

    weight = torch.zeros(heads * head_dims, 3 * heads, head_dims + 1, k, k)
    taps = path.fc.weight.t().reshape(3 * heads, k, k)
    for d in range(head_dims):
        out = slice(d * heads, (d + 1) * heads)
        weight[out, :, d] = taps
        weight[out, 0, head_dims] = path.fc.bias.view(k, k)
    inputs = torch.cat(
        [qkv, torch.ones(batch, 3 * heads, 1, height, width)], 2)
    expected = F.conv2d(
        inputs.flatten(1, 2), weight.flatten(1, 2),
        padding=dilation * (k // 2), dilation=dilation)
    torch.testing.assert_close(path(qkv), expected, rtol=0, atol=1e-5)


def test_conv_path_stride_subsamples():
    path = ACmixConvPath(2, 4, stride=2)
    dense = ACmixConvPath(2, 4)
    dense.load_state_dict(path.state_dict())
    qkv = random_qkv(2, 4)
    torch.testing.assert_close(
        path(qkv), dense(qkv)[..., ::2, ::2], rtol=0, atol=1e-6)


def test_init_weights_restores_shift_kernels_only():
    path = ACmixConvPath(2, 4)
    shift_kernels = path.dep_conv.weight.detach().clone()
    with torch.no_grad():
        path.dep_conv.weight.normal_()
        path.fc.weight.fill_(0.5)
    path.init_weights()
    assert torch.equal(path.dep_conv.weight, shift_kernels)
    assert torch.all(path.fc.weight == 0.5)


def test_mixing_rates():
    rates = MixingRates()
    assert rates.rate1.item() == rates.rate2.item() == 0.5
    a, b = torch.randn(3, 4), torch.randn(3, 4)
    with torch.no_grad():
        rates.rate1.fill_(2.)
        rates.rate2.fill_(-3.)
    torch.testing.assert_close(rates(a, b), 2 * a - 3 * b)


# ----------------------------------------------------------------------------
# WindowACmix
# ----------------------------------------------------------------------------
def make_window_acmix(rates, shift_size=3, window_size=7, embed_dims=12,
                      num_heads=3):
    torch.manual_seed(0)
    op = WindowACmix(embed_dims, num_heads, window_size, shift_size)
    with torch.no_grad():
        for param in op.parameters():
            param.add_(0.1 * torch.randn_like(param))
        op.rates.rate1.fill_(rates[0])
        op.rates.rate2.fill_(rates[1])
    return op.eval()


def naive_window_attention(op, x):
    """Swin's (shifted) window attention written out pixel by pixel:
    zero-pad to whole windows, roll, attend within each window with the
    relative-position bias, masking pairs from different shift regions."""
    batch, height, width, channels = x.shape
    ws, s, heads = op.window_size, op.shift_size, op.num_heads
    hp, wp = -(-height // ws) * ws, -(-width // ws) * ws
    x = F.pad(x, (0, 0, 0, wp - width, 0, hp - height))
    q, k, v = op.qkv(torch.roll(x, (-s, -s), (1, 2))).view(
        batch, hp, wp, 3, heads, -1).unbind(3)

    def region(i, size):
        return 0 if i < size - ws else (1 if i < size - s else 2)

    out = torch.zeros(batch, hp, wp, heads, channels // heads)
    for wy in range(0, hp, ws):
        for wx in range(0, wp, ws):
            pixels = [(wy + i, wx + j) for i in range(ws) for j in range(ws)]
            qw = torch.stack([q[:, y, x_] for y, x_ in pixels], 1)
            kw = torch.stack([k[:, y, x_] for y, x_ in pixels], 1)
            vw = torch.stack([v[:, y, x_] for y, x_ in pixels], 1)
            scale = qw.shape[-1]**-.5
            logits = torch.einsum('bnhd,bmhd->bhnm', qw, kw) * scale
            table = op.relative_position_bias_table
            for n, (y1, x1) in enumerate(pixels):
                for m, (y2, x2) in enumerate(pixels):
                    dy, dx = y1 - y2 + ws - 1, x1 - x2 + ws - 1
                    logits[:, :, n, m] += table[dy * (2 * ws - 1) + dx]
                    if s and (region(y1, hp), region(x1, wp)) != (region(
                            y2, hp), region(x2, wp)):
                        logits[:, :, n, m] -= 100
            attended = torch.einsum('bhnm,bmhd->bnhd', logits.softmax(-1), vw)
            for n, (y, x_) in enumerate(pixels):
                out[:, y, x_] = attended[:, n]
    out = op.proj(out.flatten(3))
    return torch.roll(out, (s, s), (1, 2))[:, :height, :width]


@pytest.mark.parametrize('shift_size', [0, 3])
@torch.no_grad()
def test_rates_1_0_give_pure_window_attention(shift_size):
    op = make_window_acmix((1., 0.), shift_size)
    x = torch.randn(2, 10, 15, 12)  # padded to 14 x 21
    torch.testing.assert_close(
        op(x), naive_window_attention(op, x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('shift_size', [0, 3])
@torch.no_grad()
def test_rates_0_1_give_pure_convolution_on_the_real_pixels(shift_size):
    """The convolution path sees the real pixels only (never the window
    padding), cyclically shifted in shifted blocks as in the official code,
    with the convolution zero-padding at the (shifted) border."""
    op = make_window_acmix((0., 1.), shift_size)
    x = torch.randn(2, 10, 15, 12)
    qkv = torch.roll(op.qkv(x), (-shift_size, -shift_size), (1, 2))
    conv = op.conv(qkv.view(2, 10, 15, 9, 4).permute(0, 3, 4, 1, 2))
    expected = torch.roll(
        conv.permute(0, 2, 3, 1), (shift_size, shift_size), (1, 2))
    torch.testing.assert_close(op(x), expected, rtol=0, atol=1e-5)


@torch.no_grad()
def test_convolution_path_does_not_depend_on_window_padding():
    op = make_window_acmix((0., 1.), shift_size=0)
    x = torch.randn(1, 10, 13, 12)
    for window_size in (5, 4, 13):  # pads to 10x15, 12x16, 13x13
        other = WindowACmix(12, 3, window_size)
        other.load_state_dict({
            k: v
            for k, v in op.state_dict().items()
            if k != 'relative_position_bias_table'
        }, strict=False)
        torch.testing.assert_close(other.eval()(x), op(x), rtol=0, atol=0)


@torch.no_grad()
def test_rates_mix_linearly():
    x = torch.randn(1, 9, 8, 12)
    attention = make_window_acmix((1., 0.))(x)
    conv = make_window_acmix((0., 1.))(x)
    torch.testing.assert_close(
        make_window_acmix((0.3, 1.7))(x),
        0.3 * attention + 1.7 * conv,
        rtol=1e-5,
        atol=1e-5)


@torch.no_grad()
def test_map_within_one_window_is_not_shifted():
    regular = make_window_acmix((0.5, 0.5), shift_size=0)
    shifted = copy.deepcopy(regular)
    shifted.shift_size = 3
    x = torch.randn(2, 7, 6, 12)
    torch.testing.assert_close(shifted(x), regular(x), rtol=0, atol=0)
    x = torch.randn(2, 8, 6, 12)
    assert not torch.allclose(shifted(x), regular(x))


def test_bf16_autocast_on_cpu():
    op = make_window_acmix((0.6, 0.8)).train()
    x = torch.randn(2, 10, 15, 12, requires_grad=True)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = op(x)
    assert out.dtype == torch.bfloat16
    out.float().sum().backward()
    assert op.rates.rate2.grad is not None
    with torch.no_grad():
        torch.testing.assert_close(
            out.float(), op(x), rtol=0.05, atol=0.05)


def test_gradients_reach_both_paths_and_rates():
    op = make_window_acmix((0.5, 0.5)).train()
    op(torch.randn(1, 9, 9, 12)).sum().backward()
    for name, param in op.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_bad_arguments():
    with pytest.raises(ValueError, match='divisible'):
        WindowACmix(10, 3, 7)
    with pytest.raises(ValueError, match='shift_size'):
        WindowACmix(12, 3, 7, shift_size=7)
