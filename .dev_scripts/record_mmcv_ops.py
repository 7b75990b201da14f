"""Record compiled mmcv 2.1.0's ``mmcv._ext`` outputs and gradients on fixed
inputs, for tests/test_mmcv_lite_ops.py to compare mmacmix.ops with.

Run once, in an environment with mmcv built with its ops (CPU)::

    python .dev_scripts/record_mmcv_ops.py  # writes tests/data/mmcv_ops.pt

The inputs are generated from fixed seeds and stored with the outputs, so
the tests need neither this script nor compiled mmcv. mmcv's CPU build has
no sigmoid focal loss or multi-scale deformable attention kernel: for
those the file records the error it raises, and the tests compare with the
PyTorch forms (mmdet's focal loss, mmcv's attention) instead.
"""
import argparse
import os.path as osp

import mmcv
import torch
from mmcv.utils import ext_loader

ext = ext_loader.load_ext('_ext', [
    'nms', 'softnms', 'roi_align_forward', 'roi_align_backward',
    'sigmoid_focal_loss_forward', 'ms_deform_attn_forward'
])
OUT = osp.join(osp.dirname(__file__), '..', 'tests', 'data', 'mmcv_ops.pt')


def random_boxes(gen, n, size=100.0, max_side=30.0):
    xy = torch.rand(n, 2, generator=gen) * size
    wh = torch.rand(n, 2, generator=gen) * max_side
    return torch.cat([xy, xy + wh], 1)


def nms_cases(gen):
    boxes = random_boxes(gen, 300)
    # clusters of near-duplicates, as a detector's raw output has
    centres = random_boxes(gen, 20)
    cluster = centres.repeat_interleave(10, 0) + torch.randn(
        200, 4, generator=gen)
    beyond = random_boxes(gen, 50, size=400.0, max_side=200.0) - 150.0
    zero_area = random_boxes(gen, 40)
    zero_area[:20, 2] = zero_area[:20, 0]
    zero_area[20:, 3] = zero_area[20:, 1]
    many = random_boxes(gen, 3000, size=600.0, max_side=80.0)
    tied = random_boxes(gen, 60, size=40.0)
    inputs = [
        ('random', boxes, torch.rand(300, generator=gen)),
        ('clusters', cluster, torch.rand(200, generator=gen)),
        ('beyond_image', beyond, torch.rand(50, generator=gen)),
        ('zero_area', zero_area, torch.rand(40, generator=gen)),
        ('thousands', many, torch.rand(3000, generator=gen)),
        ('tied_scores', tied, torch.randint(0, 3, (60, ), generator=gen) /
         4.0),
        ('one_box', boxes[:1], torch.ones(1)),
        ('no_boxes', torch.zeros(0, 4), torch.zeros(0)),
    ]
    cases = []
    for name, b, s in inputs:
        for threshold, offset in ((0.5, 0), (0.7, 1), (0.3, 0)):
            cases.append(
                dict(name=name, boxes=b, scores=s, iou_threshold=threshold,
                     offset=offset,
                     keep=ext.nms(b, s, iou_threshold=threshold,
                                  offset=offset)))
    return cases


def softnms_cases(gen):
    cases = []
    centres = random_boxes(gen, 15)
    boxes = centres.repeat_interleave(8, 0) + 2 * torch.randn(
        120, 4, generator=gen)
    scores = torch.rand(120, generator=gen)
    for method in (0, 1, 2):
        for threshold, sigma, min_score, offset in ((0.3, 0.5, 1e-3, 0),
                                                    (0.5, 0.2, 0.05, 1)):
            dets = boxes.new_empty((len(boxes), 5))
            inds = ext.softnms(boxes, scores, dets, iou_threshold=threshold,
                               sigma=sigma, min_score=min_score,
                               method=method, offset=offset)
            cases.append(
                dict(boxes=boxes, scores=scores, iou_threshold=threshold,
                     sigma=sigma, min_score=min_score, method=method,
                     offset=offset, inds=inds, dets=dets[:len(inds)]))
    empty = torch.zeros(0, 4)
    cases.append(
        dict(boxes=empty, scores=torch.zeros(0), iou_threshold=0.3,
             sigma=0.5, min_score=1e-3, method=1, offset=0,
             inds=ext.softnms(empty, torch.zeros(0), torch.zeros(0, 5),
                              iou_threshold=0.3, sigma=0.5, min_score=1e-3,
                              method=1, offset=0), dets=torch.zeros(0, 5)))
    return cases


def feature_rois(gen, height, width, scale):
    """RoIs in image coordinates on a (height, width) map at ``scale``:
    inside, on the border, larger than the map, beyond it, zero-size."""
    img_h, img_w = height / scale, width / scale
    inside = random_boxes(gen, 12, size=min(img_h, img_w) * 0.7,
                          max_side=min(img_h, img_w) * 0.3)
    border = torch.tensor([[0, 0, img_w, img_h], [0, 0, 3, img_h],
                           [img_w - 4, img_h - 4, img_w, img_h],
                           [-2, -2, 4, 4]])
    larger = torch.tensor([[-img_w, -img_h, 2 * img_w, 2 * img_h],
                           [-5, 2, img_w + 30, img_h + 9]])
    beyond = torch.tensor([[img_w + 3, img_h + 3, img_w + 20, img_h + 20],
                           [-30, -30, -10, -12]])
    zero = torch.tensor([[5, 5, 5, 5], [3, 2, 3, 9]])
    rois = torch.cat([inside, border, larger, beyond, zero]).float()
    batch = torch.randint(0, 2, (len(rois), 1), generator=gen).float()
    return torch.cat([batch, rois], 1)


def roi_align(features, rois, grad_scale, **kwargs):
    k, c = len(rois), features.size(1)
    shape = (k, c, kwargs['aligned_height'], kwargs['aligned_width'])
    output = features.new_zeros(shape)
    if kwargs['pool_mode'] == 0:
        argmax_y, argmax_x = features.new_zeros(shape), features.new_zeros(
            shape)
    else:
        argmax_y = argmax_x = features.new_zeros(0)
    ext.roi_align_forward(features, rois, output, argmax_y, argmax_x,
                          **kwargs)
    # one gradient per (RoI, channel), spread over its bins (stored so)
    grad_scale = grad_scale[:k * c].reshape(k, c, 1, 1).to(
        features.dtype, copy=True)
    grad_input = features.new_zeros(features.shape)
    ext.roi_align_backward(grad_scale.expand(shape).contiguous(), rois,
                           argmax_y, argmax_x, grad_input, **kwargs)
    return dict(output=output, argmax_y=argmax_y, argmax_x=argmax_x,
                grad_scale=grad_scale, grad_input=grad_input)


def roi_align_cases(gen):
    cases = []
    features = torch.randn(2, 3, 11, 14, generator=gen)
    grad_scale = torch.randn(100000, generator=gen)
    for scale in (1.0, 0.5):
        rois = feature_rois(gen, 11, 14, scale)
        for aligned in (True, False):
            for sampling_ratio in (0, 2):
                for pool_mode in (0, 1):
                    kwargs = dict(aligned_height=3, aligned_width=4,
                                  spatial_scale=scale,
                                  sampling_ratio=sampling_ratio,
                                  pool_mode=pool_mode, aligned=aligned)
                    cases.append(
                        dict(features=features, rois=rois, kwargs=kwargs,
                             **roi_align(features, rois, grad_scale,
                                         **kwargs)))
    one = feature_rois(gen, 11, 14, 0.25)[:1]
    kwargs = dict(aligned_height=7, aligned_width=7, spatial_scale=0.25,
                  sampling_ratio=0, pool_mode=1, aligned=True)
    cases.append(
        dict(features=features, rois=one, kwargs=kwargs,
             **roi_align(features, one, grad_scale, **kwargs)))
    # thousands of RoIs on one channel
    small = torch.randn(1, 1, 20, 24, generator=gen)
    many = torch.cat([
        torch.zeros(2000, 1),
        random_boxes(gen, 2000, size=90.0, max_side=60.0) - 10.0
    ], 1)
    for pool_mode in (0, 1):
        kwargs = dict(aligned_height=2, aligned_width=2, spatial_scale=0.25,
                      sampling_ratio=0, pool_mode=pool_mode, aligned=True)
        cases.append(
            dict(features=small, rois=many, kwargs=kwargs,
                 **roi_align(small, many, grad_scale, **kwargs)))
    # half precision: mmcv's CPU kernel computes in fp16 arithmetic
    half = features.half()
    rois = feature_rois(gen, 11, 14, 1.0).half()
    kwargs = dict(aligned_height=3, aligned_width=3, spatial_scale=1.0,
                  sampling_ratio=2, pool_mode=1, aligned=True)
    cases.append(
        dict(features=half, rois=rois, kwargs=kwargs,
             **roi_align(half, rois, grad_scale, **kwargs)))
    return cases


def unsupported_on_cpu():
    """The errors compiled mmcv's CPU build raises for the ops it has no
    CPU kernel of."""
    errors = {}
    x = torch.randn(4, 3)
    try:
        ext.sigmoid_focal_loss_forward(x, torch.zeros(4, dtype=torch.long),
                                       x.new_empty(0), torch.zeros_like(x),
                                       gamma=2.0, alpha=0.25)
    except RuntimeError as e:
        errors['sigmoid_focal_loss_forward'] = str(e).splitlines()[0]
    try:
        ext.ms_deform_attn_forward(
            torch.randn(1, 4, 1, 2), torch.tensor([[2, 2]]),
            torch.tensor([0]), torch.rand(1, 1, 1, 1, 1, 2),
            torch.rand(1, 1, 1, 1, 1), im2col_step=1)
    except RuntimeError as e:
        errors['ms_deform_attn_forward'] = str(e).splitlines()[0]
    return errors


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', default=OUT)
    args = parser.parse_args()
    gen = torch.Generator().manual_seed(20)
    data = dict(mmcv=mmcv.__version__, torch=str(torch.__version__),
                nms=nms_cases(gen), softnms=softnms_cases(gen),
                roi_align=roi_align_cases(gen),
                unsupported_on_cpu=unsupported_on_cpu())
    torch.save(data, args.out)
    print(f'wrote {osp.normpath(args.out)} ({osp.getsize(args.out)} bytes)')


if __name__ == '__main__':
    main()
