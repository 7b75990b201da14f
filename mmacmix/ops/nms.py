"""``nms`` and ``softnms`` as mmcv 2.1.0's CPU kernels compute them.

Both read the boxes in float32 (mmcv's CPU kernels take float32 only; bf16
and fp16 boxes are widened first, which is exact) and do each IoU with the
kernel's own float32 operations in its order, so the kept indices match
compiled mmcv exactly.
"""
import torch
import torch.nn.functional as F

from ._threads import one_thread
from ._torchvision import torchvision_ops

# Boxes resolved per greedy step: one (block x block) IoU matrix walked in
# Python, then one (kept x rest) matrix suppresses the rest at once. Large
# blocks mean few tensor ops (each a parallel region that waits for all of
# torch's threads) for the same pairs.
_BLOCK = 512


def _areas(boxes, offset):
    x1, y1, x2, y2 = boxes.unbind(1)
    return (x2 - x1 + offset) * (y2 - y1 + offset)


def _iou(coords_a, areas_a, coords_b, areas_b, offset):
    """IoU of every box of ``a`` (rows) with every box of ``b`` (columns),
    in the kernel's order: ``inter / (area_a + area_b - inter)``.
    ``coords_*`` are the (4, N) rows ``x1, y1, x2, y2`` (contiguous: the
    pairs are the cost of NMS, so each op runs once, in place)."""
    (ax1, ay1, ax2, ay2), (bx1, by1, bx2, by2) = (
        (c[:, None] for c in coords_a), coords_b)
    w = torch.minimum(ax2, bx2).sub_(torch.maximum(ax1, bx1))
    h = torch.minimum(ay2, by2).sub_(torch.maximum(ay1, by1))
    if offset:  # (adding 0 changes nothing that survives the clamp)
        w, h = w.add_(offset), h.add_(offset)
    inter = w.clamp_min_(0).mul_(h.clamp_min_(0))
    return inter.div_((areas_a[:, None] + areas_b).sub_(inter))


def _greedy_keep(coords, areas, iou_threshold, offset):
    """Positions kept by greedy NMS of boxes sorted by score (highest
    first), given as (4, N) ``coords``: a box is dropped if its IoU with a
    kept, higher-scored box exceeds ``iou_threshold``."""
    remaining = torch.arange(coords.size(1), device=coords.device)
    kept = []
    while len(remaining):
        head, rest = remaining[:_BLOCK], remaining[_BLOCK:]
        head_coords, head_areas = coords[:, head], areas[head]
        keep_local = _greedy_in_block(
            _iou(head_coords, head_areas, head_coords, head_areas, offset)
            > iou_threshold)
        kept.append(head[keep_local])
        if len(rest):
            suppressed = (_iou(head_coords[:, keep_local],
                               head_areas[keep_local], coords[:, rest],
                               areas[rest], offset)
                          > iou_threshold).any(0)
            remaining = rest[~suppressed]
        else:
            remaining = rest
    return torch.cat(kept)


def _greedy_in_block(overlaps):
    """Greedy NMS within one block, given its (b, b) overlap mask: each
    row becomes a Python int (bit j: overlaps box j), so the walk is one
    shift and one or per box. (A kept box also sets the bits of boxes
    before it: those are decided already.)"""
    b = len(overlaps)
    bits = F.pad(overlaps, (0, -b % 8)).view(b, -1, 8).to(torch.uint8)
    powers = torch.tensor([1, 2, 4, 8, 16, 32, 64, 128], dtype=torch.uint8,
                          device=bits.device)
    packed = (bits * powers).sum(-1, dtype=torch.uint8)
    removed, keep = 0, []
    for i, row in enumerate(packed.tolist()):
        if not removed >> i & 1:
            keep.append(i)
            removed |= int.from_bytes(bytes(row), 'little')
    return keep


@one_thread
def nms(boxes, scores, iou_threshold, offset):
    """Greedy non-maximum suppression, as ``mmcv._ext.nms``.

    Args:
        boxes (Tensor): (N, 4) boxes ``x1, y1, x2, y2``.
        scores (Tensor): (N, ) their scores.
        iou_threshold (float): boxes whose IoU with a kept, higher-scored
            box exceeds it are dropped.
        offset (int): 0 or 1, added to ``x2 - x1`` and ``y2 - y1``.

    Returns:
        Tensor: the kept indices (int64), highest score first.
    """
    _check_boxes(boxes, scores)
    if boxes.numel() == 0:
        return boxes.new_empty(0, dtype=torch.long)
    ops = torchvision_ops(boxes)
    if ops is not None and offset == 0:
        return ops.nms(boxes.float(), scores.float(), float(iou_threshold))
    boxes = boxes.float()
    order = scores.sort(0, descending=True)[1]
    sorted_boxes = boxes[order]
    # the threshold is a C float in the kernel: compare in float32 too
    threshold = torch.tensor(iou_threshold, dtype=torch.float32).item()
    keep = _greedy_keep(sorted_boxes.t().contiguous(),
                        _areas(sorted_boxes, offset), threshold, offset)
    return order[keep]


@one_thread
def softnms(boxes, scores, dets, iou_threshold, sigma, min_score, method,
            offset):
    """Soft-NMS (Bodla et al., 2017), as ``mmcv._ext.softnms``: it fills
    the first rows of ``dets`` with the picked boxes and their decayed
    scores and returns the boxes' indices, in the kernel's order.

    Args:
        boxes (Tensor): (N, 4) boxes on the CPU.
        scores (Tensor): (N, ) their scores.
        dets (Tensor): (N, 5) output, ``x1, y1, x2, y2, score`` per pick.
        iou_threshold (float): overlap from which methods 0 and 1 decay.
        sigma (float): width of the gaussian decay (method 2).
        min_score (float): boxes whose score decays below it are dropped.
        method (int): 0 naive (drop), 1 linear, 2 gaussian.
        offset (int): 0 or 1, added to ``x2 - x1`` and ``y2 - y1``.

    Returns:
        Tensor: the indices (int64) of the picked boxes.
    """
    _check_boxes(boxes, scores)
    if boxes.numel() == 0:
        return boxes.new_empty(0, dtype=torch.long)
    if method not in (0, 1, 2):
        raise ValueError(f'softnms: method must be 0, 1 or 2, not {method}')
    # the kernel's working arrays, permuted in place as it goes
    work = boxes.float().clone()
    score = scores.float().clone()
    areas = _areas(work, offset)
    inds = torch.arange(len(boxes))
    f32 = torch.float32
    threshold = torch.tensor(iou_threshold, dtype=f32)
    floor = torch.tensor(min_score, dtype=f32)
    sigma = torch.tensor(sigma, dtype=f32)
    i, count = 0, len(boxes)
    picked = []
    while i < count:
        # the first highest score from i on goes to i
        top = i + int(score[i:count].argmax())
        for array in (work, score, areas, inds):
            array[[i, top]] = array[[top, i]]
        picked.append(torch.cat([work[i], score[i:i + 1]]))
        rest = slice(i + 1, count)
        ovr = _iou(work[i:i + 1].t(), areas[i:i + 1], work[rest].t(),
                   areas[rest], offset)[0]
        if method == 0:
            weight = torch.where(ovr >= threshold, 0.0, 1.0)
        elif method == 1:
            weight = torch.where(ovr >= threshold, 1 - ovr, 1.0)
        else:
            weight = torch.exp(-(ovr * ovr) / sigma)
        score[rest] *= weight
        survive = score[rest] >= floor
        order = _compacted_order(survive) + i + 1
        for array in (work, score, areas, inds):
            array[i + 1:i + 1 + len(order)] = array[order]
        count = i + 1 + len(order)
        i += 1
    dets[:len(picked)] = torch.stack(picked).to(dets.dtype)
    return inds[:count]


def _compacted_order(survive):
    """Where the kernel's in-place compaction puts the survivors of one
    step: it walks forward and fills each dropped slot with the last box
    not yet looked at (dropping that too if it fails), so the first
    ``k = survive.sum()`` slots keep their survivors and take those beyond
    ``k`` in reverse order."""
    k = int(survive.sum())
    order = torch.arange(k)
    holes = (~survive[:k]).nonzero()[:, 0]
    order[holes] = (survive[k:].nonzero()[:, 0] + k).flip(0)
    return order


def _check_boxes(boxes, scores):
    if not (isinstance(boxes, torch.Tensor)
            and isinstance(scores, torch.Tensor)):
        raise TypeError('nms: boxes and scores must be tensors')
    if boxes.dim() != 2 or boxes.size(1) != 4 or scores.dim() != 1 or len(
            scores) != len(boxes):
        raise ValueError(
            f'nms: boxes must be (N, 4) and scores (N, ), not '
            f'{tuple(boxes.shape)} and {tuple(scores.shape)}')
