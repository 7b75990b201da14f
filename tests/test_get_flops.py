"""tools/analysis_tools/get_flops.py and mmacmix.analysis.complexity: the tool
on a two-stage mmdet, an mmseg and an mmpretrain config without a dataset,
exact parameter counts, multiply-add FLOPs against hand computations, and
the fused-attention handle."""
import importlib.util
import json

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.analysis import FlopAnalyzer
from mmengine.config import Config

import mmacmix  # noqa: F401  (before mmpretrain/torchvision)
from mmacmix.analysis.complexity import build_model, complexity, measure

from helpers import REPO_ROOT, TOOLS

TOY_CONFIGS = {
    'mmdet': 'configs/toy/mask_rcnn_swin_acmix_toy_coco.py',
    'mmseg': 'configs/toy/fpn_swin_acmix_toy_ade20k.py',
    'mmpretrain': 'configs/toy/swin_acmix_toy_in1k.py',
}


def load_tool():
    spec = importlib.util.spec_from_file_location(
        'get_flops', TOOLS / 'analysis_tools' / 'get_flops.py')
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


def test_tool_on_three_scopes_without_data(tmp_path, capsys):
    """The tool on a two-stage detector, a segmentor and a classifier at
    64x64 (no dataset: none is read); parameters are exactly those of the
    built model. The detector keeps 50 proposals (--cfg-options) to be
    quick."""
    out = tmp_path / 'flops.json'
    tool = load_tool()
    configs = [str(REPO_ROOT / c) for c in TOY_CONFIGS.values()]
    rows = tool.main([configs[0], '--shape', '64', '64', '--cfg-options',
                      'model.test_cfg.rpn.max_per_img=50'])
    rows += tool.main(configs[1:] + ['--shape', '64', '64',
                                     '--json', str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(rows[1:]))
    table = capsys.readouterr().out
    assert 'params (M)' in table and 'FLOPs (G)' in table
    assert [r['scope'] for r in rows] == list(TOY_CONFIGS)
    assert [r['forward'] for r in rows] == [
        'forward_dummy', "mode='tensor'", "mode='tensor'"]
    for row, config in zip(rows, configs):
        assert tuple(row['input_shape']) == (64, 64)
        assert row['flops'] > 0
        model, _ = build_model(Config.fromfile(config))
        assert row['params'] == sum(p.numel() for p in model.parameters())


def test_two_stage_counts_fixed_proposals():
    """Mask R-CNN's bbox head sees rpn.max_per_img proposals whatever the
    random RPN proposes: 10 more proposals cost exactly 10 times the
    bbox head's per-roi multiply-adds (masks: the first 100, so none)."""
    cfg = Config.fromfile(REPO_ROOT / TOY_CONFIGS['mmdet'])
    cfg.model.test_cfg.rpn.max_per_img = 110
    more = measure(cfg, (64, 64))['flops']
    cfg.model.test_cfg.rpn.max_per_img = 100
    fewer = measure(cfg, (64, 64))['flops']
    bbox_head = cfg.model.roi_head.bbox_head  # Shared2FC: 64*7*7 -> 256
    in_dims = bbox_head.in_channels * 7 * 7
    per_roi = (in_dims * 256 + 256 * 256 + 256 * (bbox_head.num_classes + 1)
               + 256 * 4 * bbox_head.num_classes)
    assert more - fewer == 10 * per_roi


class PlainNet(nn.Module):
    """Conv2d 3->8 (3x3, stride 2, padding 1), Conv2d 8->16 (1x1), global
    average pooling, Linear 16->10."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = self.conv2(self.conv1(x))
        return self.fc(x.mean((2, 3)))


def test_plain_layers_count_multiply_adds():
    """One multiply-add per weight and output position, biases and the
    mean not counted: the paper's and OpenMMLab's convention."""
    h, w = 32, 48
    flops, params = complexity(PlainNet(), (torch.randn(1, 3, h, w), ))
    conv1 = 8 * 3 * 3 * 3 * (h // 2) * (w // 2)
    conv2 = 16 * 8 * (h // 2) * (w // 2)
    assert flops == conv1 + conv2 + 16 * 10
    assert params == sum(p.numel() for p in PlainNet().parameters())


class Attention(nn.Module):

    def __init__(self, fused):
        super().__init__()
        self.fused = fused

    def forward(self, q, k, v):
        if self.fused:
            return F.scaled_dot_product_attention(q, k, v)
        attn = (q * q.shape[-1]**-0.5) @ k.transpose(-2, -1)
        return attn.softmax(-1) @ v


def test_fused_attention_counted_like_explicit_matmuls():
    """mmengine counts F.scaled_dot_product_attention as 0; with the handle
    it is 2*B*heads*N*N*d, what the explicit q@k^T, attn@v (mmdet's and
    mmseg's Swin) count."""
    b, heads, n, d = 2, 3, 49, 32
    qkv = tuple(torch.randn(b, heads, n, d) for _ in range(3))
    fused, explicit = Attention(True), Attention(False)
    plain = FlopAnalyzer(fused, qkv)
    plain.unsupported_ops_warnings(False)
    assert plain.total() == 0
    assert complexity(fused, qkv)[0] == 2 * b * heads * n * n * d
    assert complexity(explicit, qkv)[0] == 2 * b * heads * n * n * d


def test_sliding_window_attention_counted():
    """ResNet-ACmix's sliding-window attention (a custom autograd op that
    mmengine cannot see into) counts 2 * 7*7 * head_dims multiply-adds per
    output pixel and head, and two chained operators (the second reuses
    what the first cached) match a hand count: the 1x1 qkv projection, the
    2 -> head_dims positional encoding, the attention at the strided
    queries, the conv path's fc (3*heads -> 9 maps) and its 3x3 group
    convolution."""
    from mmacmix.layers import SlidingACmix
    b, heads = 2, 4

    def hand_count(c_in, c_out, h, w, stride):
        d = c_out // heads
        ho, wo = -(-h // stride), -(-w // stride)
        projections = b * h * w * c_in * 3 * c_out
        pos_enc = h * w * 2 * d
        attention = 2 * b * heads * ho * wo * 7 * 7 * d
        fc = b * h * w * d * 3 * heads * 9
        group_conv = b * ho * wo * c_out * 9 * 9
        return projections + pos_enc + attention + fc + group_conv

    h, w = 15, 13
    for stride in (1, 2):
        net = nn.Sequential(
            SlidingACmix(16, 32, num_heads=heads, stride=stride),
            SlidingACmix(32, 32, num_heads=heads))
        flops, _ = complexity(net, (torch.randn(b, 16, h, w), ))
        ho, wo = -(-h // stride), -(-w // stride)
        assert flops == (hand_count(16, 32, h, w, stride)
                         + hand_count(32, 32, ho, wo, 1)), stride


def tool_exit(argv):
    """The tool's ``main`` on bad input: the status or message it exits
    with (a message is printed as one line, with status 1)."""
    with pytest.raises(SystemExit) as stop:
        load_tool().main([str(a) for a in argv])
    return stop.value.code


def test_bad_input_is_one_error_line(tmp_path, capsys):
    assert tool_exit(['no/such/config.py']) == (
        "error: no config file 'no/such/config.py'")
    other = tmp_path / 'other_scope.py'
    other.write_text("default_scope = 'mmagic'\nmodel = dict(type='X')\n")
    assert tool_exit([other]) == (
        "error: unsupported default_scope 'mmagic': the config must be one "
        "of ['mmdet', 'mmpretrain', 'mmseg']")
    resnet = REPO_ROOT / 'configs/toy/retinanet_resnet_acmix_toy_coco.py'
    assert tool_exit([resnet, '--shape', '32', '32']) == (
        'error: ResNetACmix (depth 26) needs inputs of at least 49x49 '
        'pixels, got 32x32')
    assert tool_exit([resnet, '--cfg-options',
                      'model.backbone.out_indices=3']) == (
        'error: ResNetACmix: out_indices must be a sequence of stage '
        'indices, e.g. (3, ), got 3')
    assert tool_exit([resnet, '--shape', '0', '64']) == 2  # argparse
    assert capsys.readouterr().err.splitlines()[-1].endswith(
        ': error: --shape must be two positive sizes, got [0, 64]')
