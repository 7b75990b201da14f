"""ACmix with SAN's patchwise attention, the operator of SAN-ACmix
(:class:`PatchwiseACmix`, Pan et al., CVPR 2022, appendix C).

SAN's patchwise attention (Zhao, Jia and Koltun, CVPR 2020) computes, for
every pixel ``i``, weights for its whole ``k x k`` footprint ``R(i)`` with a
small MLP ``gamma`` and aggregates the values of the footprint with them::

    w_i = gamma([q_i, k_j for j in R(i)])   # G x k*k weights
    y_i[c] = sum_j w_i[c % G, j] * v_j[c]

Here nothing is unfolded for the whole batch: ``gamma``'s first norm takes
window statistics (:func:`window_norm_affine`) and two custom autograd
functions (:func:`window_projection`, :func:`patchwise_aggregation`) work
piece by piece (see docs/design_san.md).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .acmix import ACmixOperator, check_reflection_input
from .exporting import is_exporting

# elements of the per-piece working tensors (16 MB in float32): bounds the
# working memory of the custom functions (measured on CPU: smaller pieces
# are slower, their Python loops dominate)
_PIECE_ELEMENTS = 2**22


def _pieces(batch: int, height: int, width: int, channels: int,
            kernel_size: int) -> list:
    """``(samples, rows)`` slices of the output whose ``channels`` maps at
    all ``k x k`` footprint positions hold at most ``_PIECE_ELEMENTS``
    elements (one row of one sample at least)."""
    rows = max(1, _PIECE_ELEMENTS // (channels * kernel_size**2 * width))
    if rows < height:  # bands of rows of one sample
        return [(slice(b, b + 1), slice(i, min(i + rows, height)))
                for b in range(batch) for i in range(0, height, rows)]
    samples = rows // height
    return [(slice(b, min(b + samples, batch)), slice(0, height))
            for b in range(0, batch, samples)]


def _shifted(padded: Tensor, samples: slice, rows: slice, width: int,
             position: int, kernel_size: int) -> Tensor:
    """The pixels that the output ``rows`` of ``samples`` see at footprint
    ``position`` of a padded map: ``(b, channels, rows, width)``, a view."""
    dy, dx = divmod(position, kernel_size)
    return padded[samples, :, rows.start + dy:rows.stop + dy, dx:dx + width]


def _output_size(padded: Tensor, kernel_size: int) -> tuple:
    batch, channels, height, width = padded.shape
    return batch, channels, height - kernel_size + 1, width - kernel_size + 1


def _by_position(tensor: Tensor, kernel_size: int) -> Tensor:
    """``(..., r * k*k)`` (channel ``c * k*k + t``) to ``(..., r, k*k)``."""
    return tensor.unflatten(-1, (-1, kernel_size**2))


def _affine_windows(keys: Tensor, scale: Tensor, shift: Tensor,
                    kernel_size: int, samples: slice, rows: slice,
                    width: int) -> Tensor:
    """The affine map (per-channel ``scale``, ``shift``) of the ``k x k``
    windows of the output ``rows`` of ``samples`` in the padded ``keys``,
    ``(b, r, k*k, rows, width)`` (SAN's unfold, channel ``c * k*k + t``
    once flattened), applied while the windows are copied one footprint
    position at a time: several times faster than ``F.unfold`` on CPU."""
    scale, shift = (_by_position(t, kernel_size) for t in (scale, shift))
    batch = keys[samples].shape[0]
    out = keys.new_empty(batch, keys.shape[1], kernel_size**2,
                         rows.stop - rows.start, width)
    for t in range(kernel_size**2):
        torch.addcmul(shift[:, t, None, None],
                      _shifted(keys, samples, rows, width, t, kernel_size),
                      scale[:, t, None, None], out=out[:, :, t])
    return out


def _project_piece(keys: Tensor, scale: Tensor, shift: Tensor,
                   weight: Tensor, kernel_size: int, samples: slice,
                   rows: slice, width: int) -> Tensor:
    """:func:`window_projection` of a piece: ``(b, G, rows * W)``."""
    act = _affine_windows(keys, scale, shift, kernel_size, samples, rows,
                          width).relu_()
    return torch.matmul(weight, act.flatten(1, 2).flatten(2))


class _WindowProjection(torch.autograd.Function):
    """See :func:`window_projection`. Saves only its inputs."""

    @staticmethod
    def forward(ctx, keys, scale, shift, weight, kernel_size):
        batch, channels, height, width = _output_size(keys, kernel_size)
        out = keys.new_empty(batch, weight.shape[0], height, width)
        for samples, rows in _pieces(batch, height, width, channels,
                                     kernel_size):
            _store(
                out, samples, rows,
                _project_piece(keys, scale, shift, weight, kernel_size,
                               samples, rows, width))
        ctx.save_for_backward(keys, scale, shift, weight)
        ctx.kernel_size = kernel_size
        return out

    @staticmethod
    def backward(ctx, grad_out):
        keys, scale, shift, weight = ctx.saved_tensors
        k = ctx.kernel_size
        batch, channels, height, width = _output_size(keys, k)
        grad_keys = torch.zeros_like(keys)
        grad_scale = torch.zeros_like(scale)
        grad_shift = torch.zeros_like(shift)
        grad_weight = torch.zeros_like(weight)
        scale_t, grad_scale_t = (_by_position(t, k)
                                 for t in (scale, grad_scale))
        for samples, rows in _pieces(batch, height, width, channels, k):
            act = _affine_windows(keys, scale, shift, k, samples, rows,
                                  width).relu_()
            shape = act.shape
            act = act.flatten(1, 2).flatten(2)  # (b, r * k*k, L)
            grad = grad_out[samples, :, rows].flatten(2)  # (b, G, L)
            grad_weight += torch.matmul(grad, act.transpose(1, 2)).sum(0)
            grad_pre = torch.matmul(weight.t(), grad).mul_(act > 0)
            del act
            grad_shift += grad_pre.sum((0, 2))
            grad_pre = grad_pre.view(shape)
            # per footprint position, from the keys themselves (no copy of
            # the windows)
            for t in range(k * k):
                window = _shifted(keys, samples, rows, width, t, k)
                grad_scale_t[:, t] += (grad_pre[:, :, t] * window).sum(
                    (0, 2, 3))
                _shifted(grad_keys, samples, rows, width, t, k).addcmul_(
                    grad_pre[:, :, t], scale_t[:, t, None, None])
        return grad_keys, grad_scale, grad_shift, grad_weight, None


def _store(out: Tensor, samples: slice, rows: slice, piece: Tensor) -> None:
    """Copy a piece ``(b, channels, rows * W)`` into ``out``."""
    target = out[samples, :, rows]
    target.copy_(piece.view(target.shape))


def window_projection(keys: Tensor, scale: Tensor, shift: Tensor,
                      weight: Tensor, kernel_size: int) -> Tensor:
    """The key part of the first layer of SAN's weight MLP: every ``k x k``
    window of ``keys`` unfolded (``r * k*k`` channels, key channel ``c`` at
    footprint position ``t`` in channel ``c * k*k + t``), a per-channel
    affine map (the first norm), ReLU and a 1x1 projection to ``G``
    channels, computed one footprint position at a time (nothing is
    unfolded).

    Args:
        keys (Tensor): ``(B, r, H + k - 1, W + k - 1)`` padded keys.
        scale (Tensor): ``(r * k*k, )`` scale of the affine map.
        shift (Tensor): ``(r * k*k, )`` shift of the affine map.
        weight (Tensor): ``(G, r * k*k)`` projection.
        kernel_size (int): Footprint side ``k``.

    Returns:
        Tensor: ``(B, G, H, W)``.
    """
    return _WindowProjection.apply(keys, scale, shift, weight, kernel_size)


class _PatchwiseAggregation(torch.autograd.Function):
    """See :func:`patchwise_aggregation`. Saves only its inputs."""

    @staticmethod
    def forward(ctx, hidden, values, weight, bias, kernel_size):
        batch, channels, height, width = _output_size(values, kernel_size)
        groups = hidden.shape[1]
        out = values.new_empty(batch, channels, height, width)
        for samples, rows in _pieces(batch, height, width, groups,
                                     kernel_size):
            _aggregate_piece(hidden, values, weight, bias, kernel_size,
                             samples, rows, out[samples, :, rows])
        ctx.save_for_backward(hidden, values, weight, bias)
        ctx.kernel_size = kernel_size
        return out

    @staticmethod
    def backward(ctx, grad_out):
        hidden, values, weight, bias = ctx.saved_tensors
        k = ctx.kernel_size
        batch, channels, height, width = _output_size(values, k)
        groups = hidden.shape[1]
        grad_hidden = torch.empty_like(hidden)
        grad_values = torch.zeros_like(values)
        grad_weight = torch.zeros_like(weight)
        grad_bias = torch.zeros_like(bias)
        for samples, rows in _pieces(batch, height, width, groups, k):
            piece = hidden[samples, :, rows]  # (b, G, R, W)
            weights = _attention_weights(piece, weight, bias, k)
            # (b, channels / G, G, R, W)
            grad = grad_out[samples, :, rows].unflatten(1, (-1, groups))
            grad_weights = torch.empty_like(weights)
            product = torch.empty_like(grad)
            for t in range(k * k):
                window = _shifted(values, samples, rows, width, t,
                                  k).unflatten(1, (-1, groups))
                torch.sum(torch.mul(window, grad, out=product), 1,
                          out=grad_weights[:, :, t])
                _shifted(grad_values, samples, rows, width, t,
                         k).unflatten(1, (-1, groups)).addcmul_(
                             grad, weights[:, None, :, t])
            grad_weights = grad_weights.flatten(1, 2).flatten(2)
            grad_bias += grad_weights.sum((0, 2))
            grad_weight += torch.matmul(
                grad_weights, piece.flatten(2).transpose(1, 2)).sum(0)
            _store(grad_hidden, samples, rows,
                   torch.matmul(weight.t(), grad_weights))
        return grad_hidden, grad_values, grad_weight, grad_bias, None


def _aggregate_piece(hidden: Tensor, values: Tensor, weight: Tensor,
                     bias: Tensor, kernel_size: int, samples: slice,
                     rows: slice, out: Tensor) -> Tensor:
    """:func:`patchwise_aggregation` of a piece into ``out``, ``(b, C,
    rows, W)`` (a view of the output): one footprint position at a time,
    accumulated (nothing unfolded)."""
    groups, width = hidden.shape[1], out.shape[-1]
    weights = _attention_weights(hidden[samples, :, rows], weight, bias,
                                 kernel_size)
    out = out.unflatten(1, (-1, groups)).zero_()
    for t in range(kernel_size**2):
        out.addcmul_(
            _shifted(values, samples, rows, width, t,
                     kernel_size).unflatten(1, (-1, groups)),
            weights[:, None, :, t])
    return out.flatten(1, 2)


def _attention_weights(hidden: Tensor, weight: Tensor, bias: Tensor,
                       kernel_size: int) -> Tensor:
    """The last layer of the weight MLP on a piece ``(b, G, R, W)`` of the
    hidden map: ``(b, G, k*k, R, W)`` weights (SAN's layout: output channel
    ``g * k*k + t``)."""
    weights = torch.matmul(weight, hidden.flatten(2)).add_(bias[:, None])
    return weights.view(hidden.shape[0], -1, kernel_size**2,
                        *hidden.shape[2:])


def patchwise_aggregation(hidden: Tensor, values: Tensor, weight: Tensor,
                          bias: Tensor, kernel_size: int) -> Tensor:
    """The last layer of SAN's weight MLP and the aggregation: the weights
    ``w = weight @ hidden + bias``, ``G * k*k`` channels (channel
    ``g * k*k + t``: group ``g``, footprint position ``t``), then
    ``out_i[c] = sum_t w_i[c % G, t] * values_(i + t)[c]``, one footprint
    position at a time (nothing is unfolded).

    Args:
        hidden (Tensor): ``(B, G, H, W)`` hidden map of the weight MLP.
        values (Tensor): ``(B, C, H + k - 1, W + k - 1)`` padded values;
            ``C`` a multiple of ``G``.
        weight (Tensor): ``(G * k*k, G)`` last layer of the MLP.
        bias (Tensor): ``(G * k*k, )`` its bias.
        kernel_size (int): Footprint side ``k``.

    Returns:
        Tensor: ``(B, C, H, W)``.
    """
    return _PatchwiseAggregation.apply(hidden, values, weight, bias,
                                       kernel_size)


def window_norm_affine(norm: nn.modules.batchnorm._BatchNorm,
                       queries: Tensor, keys: Tensor,
                       kernel_size: int) -> tuple:
    """``(scale, shift)`` of SAN's first norm of the weight MLP, a BatchNorm
    over the query channels and the unfolded key channels
    (``r * (1 + k*k)`` channels: the queries, then key channel ``c`` at
    footprint position ``t`` in ``r + c * k*k + t``), as ``norm`` would
    apply it to the unfolded tensor: batch statistics (updating ``norm``'s
    running ones) in training, the running statistics in eval mode.

    Those of an unfolded key channel are window means of the batch-mean
    padded map: the keys are never unfolded. A SyncBatchNorm is applied with
    the statistics of the local batch.

    Args:
        norm (_BatchNorm): The norm, with ``r * (1 + k*k)`` channels.
        queries (Tensor): ``(B, r, H, W)``.
        keys (Tensor): ``(B, r, H + k - 1, W + k - 1)`` padded keys.
        kernel_size (int): Footprint side ``k``.
    """
    if norm.training or norm.running_mean is None:
        mean, var = _window_statistics(queries, keys, kernel_size)
        if norm.training and norm.track_running_stats:
            count = queries.numel() // queries.shape[1]
            with torch.no_grad():
                norm.num_batches_tracked.add_(1)
                factor = norm.momentum
                if factor is None:  # cumulative average
                    factor = 1 / norm.num_batches_tracked.item()
                norm.running_mean.lerp_(mean.to(norm.running_mean), factor)
                norm.running_var.lerp_(
                    (var * count / max(count - 1, 1)).to(norm.running_var),
                    factor)
    else:
        mean, var = norm.running_mean, norm.running_var
    scale = torch.rsqrt(var + norm.eps)
    if norm.affine:
        scale = scale * norm.weight
        return scale, norm.bias - mean * scale
    return scale, -mean * scale


def _window_statistics(queries: Tensor, keys: Tensor,
                       kernel_size: int) -> tuple:
    """Batch mean and (biased) variance of the channels of
    :func:`window_norm_affine`, in float32 at least."""
    height, width = queries.shape[-2:]
    dtype = torch.promote_types(queries.dtype, torch.float32)
    queries, keys = queries.to(dtype), keys.to(dtype)
    var_q, mean_q = torch.var_mean(queries, (0, 2, 3), correction=0)
    # centred first, for the precision of E[x^2] - E[x]^2
    centre = keys.mean((0, 2, 3), keepdim=True).detach()
    keys = keys - centre

    def window_means(x):  # the mean over (b, i) of x[b, c, i + t]
        return F.avg_pool2d(x.mean(0, keepdim=True), (height, width),
                            stride=1).flatten()

    mean_k = window_means(keys)
    var_k = window_means(keys.square()) - mean_k.square()
    mean_k = mean_k + centre.flatten().repeat_interleave(kernel_size**2)
    return torch.cat([mean_q, mean_k]), torch.cat([var_q, var_k])


def unfold_patchwise_attention(module: 'PatchwiseACmix', q: Tensor,
                               k: Tensor, v: Tensor) -> Tensor:
    """The attention path of ``module`` as SAN's code computes it, with
    ``F.unfold`` (``k*k`` copies of the keys and values of the whole batch):
    ``gamma`` on ``[q_i, k_j for j in R(i)]``, its norms called as modules
    (in training they use and update batch statistics), then the weighted
    sum of the unfolded values.

    Plain ops only: the layer uses it while exporting, where exporters
    trace it for any input size, and the tests as the oracle of the
    custom functions.
    """
    batch, _, height, width = q.shape
    kernel = module.kernel_att
    pad = [kernel // 2] * 4
    keys = F.unfold(F.pad(k, pad, mode='reflect'), kernel)
    x = torch.cat([q, keys.view(batch, -1, height, width)], 1)
    x = module.attn_conv1(F.relu(module.attn_norm1(x)))
    weights = module.attn_conv2(F.relu(module.attn_norm2(x)))
    groups = module.weight_channels
    weights = weights.view(batch, 1, groups, kernel**2, height * width)
    values = F.unfold(F.pad(v, pad, mode='reflect'), kernel)
    values = values.view(batch, -1, groups, kernel**2, height * width)
    return (values * weights).sum(3).view(batch, -1, height, width)


class PatchwiseACmix(ACmixOperator):
    """ACmix operator with SAN's patchwise attention (SAN-ACmix, Pan et al.,
    CVPR 2022, appendix C).

    Stage I, shared by both paths: one 1x1 convolution ``qkv`` (with bias,
    as SAN's) projects the input to a query and a key of
    ``r = out_channels / 4`` channels and values of ``out_channels``
    channels (SAN's widths: ``C/16`` and ``C/4`` in a block of ``C``
    channels), the values as four groups of ``r`` channels, so that all six
    pieces have the same width.

    * Attention path: SAN's patchwise attention over the
      ``kernel_att x kernel_att`` footprint (reflection padded), its weight
      MLP ``attn_norm1``, ``attn_conv1``, ``attn_norm2``, ``attn_conv2``
      computing ``G = out_channels / share_planes`` weight channels, each
      shared by the value channels with the same index modulo ``G``. Its
      output channel ``j * r + e`` is channel ``e`` of value group ``j``.
    * Convolution path: :class:`ACmixConvPath` with 4 heads of ``r``
      channels whose fully connected layer (no bias, as ResNet-ACmix's)
      mixes the six pieces into ``kernel_conv**2`` maps.

    ``out = rate1 * attention + rate2 * conv``. Stride 1; the input must be
    larger than ``kernel_att // 2`` on both sides (reflection padding).

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels (SAN's ``C/4``); a multiple of 4
            and of ``share_planes``.
        kernel_att (int): Attention footprint side (odd). Defaults to 7.
        kernel_conv (int): Kernel size of the convolution path.
            Defaults to 3.
        share_planes (int): Value channels that share one weight channel.
            Defaults to 8 (SAN).
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 kernel_att: int = 7,
                 kernel_conv: int = 3,
                 share_planes: int = 8):
        super().__init__()
        if out_channels % 4 or out_channels % share_planes:
            raise ValueError(f'out_channels ({out_channels}) must be '
                             f'divisible by 4 and by share_planes '
                             f'({share_planes})')
        if kernel_att % 2 == 0 or kernel_att < 1:
            raise ValueError(f'kernel_att must be odd, got {kernel_att}')
        self.out_channels = out_channels
        self.head_dims = r = out_channels // 4
        self.weight_channels = g = out_channels // share_planes
        self.kernel_att = kernel_att
        taps = kernel_att**2
        # stage I: the query, the key and four value groups
        self.qkv = nn.Conv2d(in_channels, 6 * r, 1)
        # attention path: SAN's weight MLP
        self.attn_norm1 = nn.BatchNorm2d(r * (1 + taps))
        self.attn_conv1 = nn.Conv2d(r * (1 + taps), g, 1, bias=False)
        self.attn_norm2 = nn.BatchNorm2d(g)
        self.attn_conv2 = nn.Conv2d(g, g * taps, 1)
        self.add_conv_path(4, r, kernel_conv, fc_bias=False, in_maps=6)

    def forward(self, x: Tensor) -> Tensor:
        """Map ``(B, C_in, H, W)`` to ``(B, C_out, H, W)``."""
        check_reflection_input(x, self.kernel_att, 'PatchwiseACmix')
        batch, _, height, width = x.shape
        qkv = self.qkv(x).view(batch, 6, self.head_dims, height, width)
        q, k, v = qkv[:, 0], qkv[:, 1], qkv[:, 2:].flatten(1, 2)
        attention = self._attend(q, k, v)
        # rate1 as a product: SAN's attention functions take no rate
        attention = self.rates.rate1.to(attention.dtype) * attention
        return self.mix(attention, self.conv(qkv, *self.conv_rate_and_bias()))

    def _attend(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        """The attention path: ``(B, r, H, W)`` queries and keys and
        ``(B, 4 * r, H, W)`` values to ``(B, 4 * r, H, W)``."""
        if is_exporting():
            # the custom functions are opaque to the exporters and their
            # pieces fix the input size
            return unfold_patchwise_attention(self, q, k, v)
        kernel, r, dtype = self.kernel_att, self.head_dims, q.dtype
        # the custom functions take one dtype; autocast pads and normalises
        # in float32
        pad = [kernel // 2] * 4
        keys = F.pad(k, pad, mode='reflect').to(dtype)
        values = F.pad(v, pad, mode='reflect').to(dtype)
        scale, shift = (t.to(dtype) for t in window_norm_affine(
            self.attn_norm1, q, keys, kernel))
        weight1 = self.attn_conv1.weight.flatten(1).to(dtype)
        # gamma's first layer: the query channels, then the key windows
        queries = torch.addcmul(shift[:r, None, None], q,
                                scale[:r, None, None]).relu()
        hidden = F.conv2d(queries, weight1[:, :r, None, None])
        hidden = hidden + window_projection(keys, scale[r:], shift[r:],
                                            weight1[:, r:], kernel)
        hidden = F.relu(self.attn_norm2(hidden)).to(dtype)
        conv2 = self.attn_conv2
        return patchwise_aggregation(hidden, values,
                                     conv2.weight.flatten(1).to(dtype),
                                     conv2.bias.to(dtype), kernel)

    def extra_repr(self) -> str:
        return (f'head_dims={self.head_dims}, '
                f'weight_channels={self.weight_channels}, '
                f'kernel_att={self.kernel_att}')


__all__ = [
    'PatchwiseACmix', 'patchwise_aggregation', 'unfold_patchwise_attention',
    'window_norm_affine', 'window_projection'
]
