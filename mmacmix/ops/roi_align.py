"""``roi_align_forward`` / ``roi_align_backward`` as mmcv 2.1.0's kernels.

Each output bin averages (or, in max mode, takes the largest of) a
``grid_h x grid_w`` grid of bilinear samples; ``sampling_ratio=0`` picks
the grid per RoI, ``ceil(roi size / output size)``. The sample coordinates
and bilinear weights are computed with the CPU kernel's float operations in
its order; the sums over samples are done in another order, so averages
agree to rounding (about 1e-7 relative). RoIs are grouped by their grid, so
each group is one set of tensor operations, never a loop over RoIs.
"""
import torch
import torch.nn.functional as F

from ._threads import one_thread
from ._torchvision import torchvision_ops

MAX_POOL, AVG_POOL = 0, 1
# the kernel's start value for max pooling: a bin whose samples are all
# lower keeps it (and argmax -1)
_MAX_START = -10000.0
# tensor elements one chunk of RoIs may materialise
_CHUNK_ELEMENTS = 1 << 23


def _float32(value):
    """``value`` rounded to float32, as the kernels' ``float`` arguments."""
    return torch.tensor(value, dtype=torch.float32).item()


def _compute_dtype(dtype):
    # the kernel computes in the input's type; half and bfloat16 in float32
    return torch.float64 if dtype == torch.float64 else torch.float32


def _roi_grid(rois, pooled_h, pooled_w, spatial_scale, sampling_ratio,
              aligned, dtype):
    """Per RoI: batch index, start and bin size per axis, grid per axis."""
    rois = rois.to(dtype)
    offset = 0.5 if aligned else 0.0
    scale = _float32(spatial_scale)
    start_w = rois[:, 1] * scale - offset
    start_h = rois[:, 2] * scale - offset
    roi_w = (rois[:, 3] * scale - offset) - start_w
    roi_h = (rois[:, 4] * scale - offset) - start_h
    if aligned:
        if bool(((roi_w < 0) | (roi_h < 0)).any()):
            raise RuntimeError(
                'roi_align: RoIs must have x2 >= x1 and y2 >= y1 when '
                'aligned=True')
    else:  # mmcv keeps this for backward compatibility
        roi_w, roi_h = roi_w.clamp_min(1.0), roi_h.clamp_min(1.0)
    bin_h, bin_w = roi_h / pooled_h, roi_w / pooled_w
    if sampling_ratio > 0:
        grid_h = torch.full_like(start_h, sampling_ratio, dtype=torch.long)
        grid_w = grid_h
    else:
        grid_h = torch.ceil(roi_h / pooled_h).long()
        grid_w = torch.ceil(roi_w / pooled_w).long()
    return rois[:, 0].long(), start_h, start_w, bin_h, bin_w, grid_h, grid_w


def _samples(start, bin_size, grid, pooled):
    """(n, pooled, grid) sample coordinates along one axis, in the kernel's
    order: ``start + p * bin + (i + .5) * bin / grid``."""
    dtype = start.dtype
    p = torch.arange(pooled, dtype=dtype, device=start.device)
    i = torch.arange(grid, dtype=dtype, device=start.device) + 0.5
    start, bin_size = start[:, None, None], bin_size[:, None, None]
    return (start + p[None, :, None] * bin_size) + (
        i[None, None, :] * bin_size) / grid


def _corners(coord, size):
    """The kernel's bilinear neighbours along one axis: the low and high
    index of each coordinate (same shape, int64) and their weights; a
    sample outside ``[-1, size]`` gets weight 0 at index 0."""
    valid = (coord >= -1.0) & (coord <= size)
    c = coord.clamp_min(0)
    low = torch.where(valid, c, 0).long()
    edge = low >= size - 1
    low = torch.where(edge, size - 1, low)
    high = torch.where(edge, low, low + 1)
    c = torch.where(edge, low.to(c.dtype), c)
    lw = c - low
    hw = 1 - lw
    zero = torch.zeros((), dtype=c.dtype, device=c.device)
    return low, high, torch.where(valid, hw, zero), torch.where(
        valid, lw, zero)


def _axis_table(start, bin_size, grid, pooled, size):
    """Indices and weights (n, pooled, grid, 2) of each sample's two
    neighbours along one axis, low first, and the coordinates."""
    coord = _samples(start, bin_size, grid, pooled)
    low, high, hw, lw = _corners(coord, size)
    return torch.stack([low, high], -1), torch.stack([hw, lw], -1), coord


def _groups(grid_h, grid_w):
    """(grid_h, grid_w, RoI indices) for each distinct pair of grids."""
    pairs, inverse = torch.unique(
        torch.stack([grid_h, grid_w], 1), dim=0, return_inverse=True)
    order = inverse.argsort(stable=True)
    counts = torch.bincount(inverse, minlength=len(pairs)).tolist()
    for (gh, gw), members in zip(pairs.tolist(), order.split(counts)):
        yield gh, gw, members


def _chunks(members, per_roi):
    """``members`` split so each part materialises at most
    ``_CHUNK_ELEMENTS`` (at least one RoI per part)."""
    size = max(1, _CHUNK_ELEMENTS // max(per_roi, 1))
    return members.split(size)


def _bin_entries(geometry, sel, gh, gw, shape, pooled):
    """For RoIs ``sel`` of one grid: the channels-last pixel index and
    weight of every (sample, neighbour) of every bin, shaped
    (n, ph, pw, gh, gw, 2, 2) (y neighbour, then x neighbour), plus the
    sample coordinates (n, ph, gh) and (n, pw, gw)."""
    batch, start_h, start_w, bin_h, bin_w = (g[sel] for g in geometry[:5])
    (_, height, width), (ph, pw) = shape, pooled
    ry, wy, y = _axis_table(start_h, bin_h, gh, ph, height)
    qx, wx, x = _axis_table(start_w, bin_w, gw, pw, width)
    # to (n, ph, 1, gh, 1, 2, 1) and (n, 1, pw, 1, gw, 1, 2)
    rows = (slice(None), slice(None), None, slice(None), None, slice(None),
            None)
    cols = (slice(None), None, slice(None), None, slice(None), None,
            slice(None))
    ry, wy, qx, wx = ry[rows], wy[rows], qx[cols], wx[cols]
    base = (batch * (height * width))[:, None, None, None, None, None, None]
    return base + ry * width + qx, wy * wx, y, x


@one_thread
def roi_align_forward(input, rois, output, argmax_y, argmax_x,
                      aligned_height, aligned_width, spatial_scale,
                      sampling_ratio, pool_mode, aligned):
    """RoIAlign of ``input`` over ``rois``, written into ``output`` (and, in
    max mode, the winning sample's coordinates into ``argmax_y`` and
    ``argmax_x``), as ``mmcv._ext.roi_align_forward``.

    Args:
        input (Tensor): (B, C, H, W) features.
        rois (Tensor): (K, 5) RoIs ``batch index, x1, y1, x2, y2`` in image
            coordinates.
        output (Tensor): (K, C, aligned_height, aligned_width), filled.
        argmax_y (Tensor): like ``output`` in max mode (filled), else empty.
        argmax_x (Tensor): like ``argmax_y``.
        aligned_height (int): output bins per RoI, vertically.
        aligned_width (int): output bins per RoI, horizontally.
        spatial_scale (float): feature-map size over image size.
        sampling_ratio (int): samples per bin and axis; 0 picks
            ``ceil(RoI size / output size)`` per RoI.
        pool_mode (int): 0 max, 1 average.
        aligned (bool): shift the RoIs by half a pixel (Detectron2's
            RoIAlignV2) instead of stretching them to at least 1 pixel.
    """
    pooled = (aligned_height, aligned_width)
    _check(input, rois, output, pooled, pool_mode, argmax_y, argmax_x)
    if len(rois) == 0:
        return
    ops = torchvision_ops(input)
    if ops is not None and pool_mode == AVG_POOL:
        output.copy_(
            ops.roi_align(input, rois.to(input.dtype), spatial_scale,
                          aligned_height, aligned_width, sampling_ratio,
                          aligned))
        return
    dtype = _compute_dtype(input.dtype)
    _, channels, height, width = input.shape
    geometry = _roi_grid(rois, *pooled, spatial_scale, sampling_ratio,
                         aligned, dtype)
    features = input.to(dtype).permute(0, 2, 3, 1).reshape(-1, channels)
    for gh, gw, members in _groups(*geometry[5:]):
        per_roi = aligned_height * aligned_width * gh * gw * 4 * (
            channels if pool_mode == MAX_POOL else 1)
        for sel in _chunks(members, per_roi):
            if gh * gw == 0:  # a zero-size RoI (aligned): no samples
                _empty_bins(output, argmax_y, argmax_x, sel, pool_mode)
                continue
            index, weight, y, x = _bin_entries(geometry, sel, gh, gw,
                                               (channels, height, width),
                                               pooled)
            if pool_mode == AVG_POOL:
                bins = F.embedding_bag(
                    index.reshape(-1, gh * gw * 4), features,
                    mode='sum', per_sample_weights=weight.reshape(
                        -1, gh * gw * 4)) / (gh * gw)
                output[sel] = _to_nchw(bins, len(sel), pooled).to(
                    output.dtype)
            else:
                _max_pool(features, index, weight, y, x, sel, output,
                          argmax_y, argmax_x, pooled)


def _to_nchw(bins, n, pooled):
    return bins.reshape(n, *pooled, -1).permute(0, 3, 1, 2)


def _empty_bins(output, argmax_y, argmax_x, sel, pool_mode):
    if pool_mode == AVG_POOL:
        output[sel] = 0
    else:
        output[sel] = _MAX_START
        argmax_y[sel] = -1
        argmax_x[sel] = -1


def _max_pool(features, index, weight, y, x, sel, output, argmax_y,
              argmax_x, pooled):
    n, ph, pw, gh, gw = index.shape[:5]
    index = index.reshape(n, ph, pw, gh * gw, 4)
    weight = weight.reshape(n, ph, pw, gh * gw, 4, 1)
    # w1*v1 + w2*v2 + w3*v3 + w4*v4, left to right as the kernel adds
    value = weight[..., 0, :] * features[index[..., 0]]
    for k in range(1, 4):
        value = value + weight[..., k, :] * features[index[..., k]]
    best = value.max(3, keepdim=True).values
    # the first sample reaching the maximum wins, as the kernel's strict >
    first = (value == best).to(torch.uint8).argmax(3)
    best = best.squeeze(3)
    found = best > _MAX_START
    iy, ix = first // gw, first % gw
    rois = torch.arange(n, device=y.device)[:, None, None, None]
    sample_y = y[rois, torch.arange(ph, device=y.device)[:, None, None], iy]
    sample_x = x[rois, torch.arange(pw, device=x.device)[:, None], ix]
    none = torch.full_like(best, -1.0)
    output[sel] = _to_nchw(torch.where(found, best, _MAX_START), n,
                           pooled).to(output.dtype)
    argmax_y[sel] = _to_nchw(torch.where(found, sample_y, none), n,
                             pooled).to(argmax_y.dtype)
    argmax_x[sel] = _to_nchw(torch.where(found, sample_x, none), n,
                             pooled).to(argmax_x.dtype)


@one_thread
def roi_align_backward(grad_output, rois, argmax_y, argmax_x, grad_input,
                       aligned_height, aligned_width, spatial_scale,
                       sampling_ratio, pool_mode, aligned):
    """The gradient of :func:`roi_align_forward` with respect to its input,
    added to ``grad_input``, as ``mmcv._ext.roi_align_backward``: each
    bin's gradient goes to the bilinear neighbours of its samples (average)
    or of the winning sample ``argmax_y, argmax_x`` (max).

    Args:
        grad_output (Tensor): (K, C, aligned_height, aligned_width).
        rois (Tensor): (K, 5) RoIs, as in the forward.
        argmax_y (Tensor): the forward's, in max mode (else unused).
        argmax_x (Tensor): likewise.
        grad_input (Tensor): (B, C, H, W), accumulated into.
        aligned_height (int): as in the forward.
        aligned_width (int): as in the forward.
        spatial_scale (float): as in the forward.
        sampling_ratio (int): as in the forward.
        pool_mode (int): 0 max, 1 average.
        aligned (bool): as in the forward.
    """
    pooled = (aligned_height, aligned_width)
    _check(grad_input, rois, grad_output, pooled, pool_mode, argmax_y,
           argmax_x)
    if len(rois) == 0:
        return
    batch_size, channels, height, width = grad_input.shape
    dtype = _compute_dtype(grad_input.dtype)
    ops = torchvision_ops(grad_input)
    if ops is not None and pool_mode == AVG_POOL:
        grad_input += ops._roi_align_backward(
            grad_output, rois.to(grad_output.dtype), spatial_scale,
            aligned_height, aligned_width, batch_size, channels, height,
            width, sampling_ratio, aligned)
        return
    grad_output = grad_output.to(dtype)
    if pool_mode == MAX_POOL:
        grad = torch.zeros(grad_input.numel(), dtype=dtype,
                           device=grad_input.device)
        _max_pool_backward(grad_output, rois, argmax_y.to(dtype),
                           argmax_x.to(dtype), grad, grad_input.shape)
        grad_input += grad.view(grad_input.shape).to(grad_input.dtype)
        return
    # channels last, as the forward reads the features
    grad = torch.zeros(batch_size * height * width, channels, dtype=dtype,
                       device=grad_input.device)
    geometry = _roi_grid(rois, *pooled, spatial_scale, sampling_ratio,
                         aligned, dtype)
    for gh, gw, members in _groups(*geometry[5:]):
        if gh * gw == 0:
            continue
        per_roi = aligned_height * aligned_width * gh * gw * 4 * channels
        for sel in _chunks(members, per_roi):
            index, weight, _, _ = _bin_entries(geometry, sel, gh, gw,
                                               (channels, height, width),
                                               pooled)
            bins = grad_output[sel].permute(0, 2, 3, 1).reshape(
                -1, 1, channels)
            # (grad * w) / count, as the kernel scales each neighbour
            source = bins * weight.reshape(len(bins), -1, 1) / (gh * gw)
            grad.index_add_(0, index.reshape(-1),
                            source.reshape(-1, channels))
    grad_input += grad.view(batch_size, height, width, channels).permute(
        0, 3, 1, 2).to(grad_input.dtype)


def _max_pool_backward(grad_output, rois, argmax_y, argmax_x, grad, shape):
    """Max mode: each bin's gradient to the neighbours of its winner, per
    channel, into the flat NCHW ``grad``."""
    batch_size, channels, height, width = shape
    k, _, ph, pw = grad_output.shape
    batch = rois[:, 0].long()
    plane = (batch[:, None] * channels + torch.arange(
        channels, device=grad.device))[:, :, None, None] * (height * width)
    for sel in _chunks(torch.arange(k, device=grad.device),
                       channels * ph * pw * 4):
        low_y, high_y, hy, ly = _corners(argmax_y[sel], height)
        low_x, high_x, hx, lx = _corners(argmax_x[sel], width)
        # bins without a winner (argmax -1) take no gradient
        g = torch.where(argmax_y[sel] != -1, grad_output[sel], 0)
        for r, wy in ((low_y, hy), (high_y, ly)):
            for q, wx in ((low_x, hx), (high_x, lx)):
                grad.index_add_(0, (plane[sel] + r * width + q).reshape(-1),
                                (g * (wy * wx)).reshape(-1))


def _check(features, rois, bins, pooled, pool_mode, argmax_y, argmax_x):
    """Raise ValueError for arguments the kernels would misread."""
    if pool_mode not in (MAX_POOL, AVG_POOL):
        raise ValueError(
            f'roi_align: pool_mode must be 0 (max) or 1 (avg), not '
            f'{pool_mode}')
    if features.dim() != 4:
        raise ValueError('roi_align: features must be (B, C, H, W), not '
                         f'{tuple(features.shape)}')
    if rois.dim() != 2 or rois.size(1) != 5:
        raise ValueError('roi_align: rois must be (K, 5) rows of batch '
                         f'index, x1, y1, x2, y2, not {tuple(rois.shape)}')
    want = (len(rois), features.size(1), *pooled)
    if tuple(bins.shape) != want:
        raise ValueError(f'roi_align: expected (RoIs, channels, height, '
                         f'width) = {want}, got {tuple(bins.shape)}')
    if pool_mode == MAX_POOL:
        for name, t in (('argmax_y', argmax_y), ('argmax_x', argmax_x)):
            if t.shape != bins.shape:
                raise ValueError(f'roi_align: {name} must be shaped like '
                                 f'the bins {want} in max mode')
    if len(rois):
        batch = rois[:, 0].long()
        if bool(((batch < 0) | (batch >= len(features))).any()):
            raise ValueError(
                f'roi_align: RoI batch indices must be in [0, '
                f'{len(features)}), got {batch.min()} to {batch.max()}')
