"""Export to ONNX (checked in onnxruntime) and torch.export, for every
backbone, the RetinaNet of the card and the export tool."""
import re
import shlex
from pathlib import Path

import pytest
import torch

import mmacmix  # noqa: F401  (registers the models, fixes torchvision)
from mmacmix.deployment import (ExportError, FlatOutputs, export_and_check,
                                export_program)
from mmacmix.layers import (PatchwiseACmix, SlidingACmix,
                            SpatialReductionACmix, WindowACmix)
from mmacmix.models.backbones import PVTACmix, ResNetACmix, SANACmix, SwinACmix

from helpers import REPO_ROOT, run_tool

pytest.importorskip('onnxruntime')

# small archs; the sizes are odd, not multiples of the strides, and for
# Swin cross the size below which the last stage fits in one window (and
# is not shifted): 4 * 2**3 * window_size = 64 with window_size 2. PVT's
# are 64 at least: torch.export's convolutions guard on the reduced maps of
# the first stage (1/32) being more than a pixel
BACKBONES = {
    'resnet': (lambda: ResNetACmix(
        26, stem_channels=8, base_channels=4, out_indices=(0, 1, 2, 3)),
               (97, 101), [(131, 99), (113, 150)]),
    'san': (lambda: SANACmix(
        10, out_indices=(2, 4), stem_channels=8,
        stage_channels=(32, 32, 32, 32, 32)), (97, 101), [(131, 99),
                                                          (113, 150)]),
    'swin': (lambda: SwinACmix(
        dict(embed_dims=16, depths=[2, 2, 2, 2], num_heads=[1, 1, 2, 2]),
        window_size=2, drop_path_rate=0.), (75, 69), [(47, 33), (99, 61)]),
    'pvt': (lambda: PVTACmix(
        dict(embed_dims=[8, 16, 16, 32], depths=[1, 1, 1, 1],
             num_heads=[1, 2, 2, 4], sr_ratios=[8, 4, 2, 1],
             mlp_ratios=[2, 2, 2, 2]), drop_path_rate=0.), (67, 71),
            [(99, 64), (75, 129)]),
}


def backbone(name):
    torch.manual_seed(0)
    build, shape, others = BACKBONES[name]
    return FlatOutputs(build()).eval(), shape, others


def test_attention_exports_with_the_torchscript_exporter(tmp_path):
    """``torch.onnx.export(dynamo=False)`` exported ResNet-ACmix's and
    SAN-ACmix's attention path (custom autograd functions) as zeros; it
    now exports their plain-op form, at any input size."""
    for name in ('resnet', 'san'):
        module, shape, others = backbone(name)
        report = export_and_check(module, shape, tmp_path / f'{name}.onnx',
                                  dynamic=True, exporter='torchscript',
                                  check_shapes=others)
        assert [row['shape'] for row in report['rows']] == [shape] + others
        assert max(row['max_abs_diff'] for row in report['rows']) <= 1e-4
        # the attention path matters: zeros would not pass the check
        x = torch.randn(1, 3, *shape)
        with torch.no_grad():
            full = module(x)
            for m in module.modules():
                if hasattr(m, 'rates'):
                    m.rates.rate1.zero_()
            no_attention = module(x)
        assert max((a - b).abs().max() for a, b in zip(full,
                                                       no_attention)) > 1e-2


def test_fixed_size_torchscript_export_of_every_backbone(tmp_path):
    for name in ('swin', 'pvt'):
        module, shape, _ = backbone(name)
        report = export_and_check(module, shape, tmp_path / f'{name}.onnx',
                                  exporter='torchscript')
        assert report['rows'][0]['max_abs_diff'] <= 1e-4


def test_wrong_export_is_refused_and_deleted(tmp_path):
    """The TorchScript tracer fixes sizes of Swin's graph: a dynamic export
    that is wrong at another size raises, and no file is left."""
    module, shape, others = backbone('swin')
    path = tmp_path / 'swin.onnx'
    with pytest.raises(ExportError, match='differs from PyTorch'):
        export_and_check(module, shape, path, dynamic=True,
                         exporter='torchscript', check_shapes=others)
    assert not path.exists()


def test_window_acmix_dynamo_export_any_size(tmp_path, shift=2):
    """Swin's operator with symbolic sizes: padded or not, shifted or not
    (a map in one window, 4x3, is not shifted), from one ONNX file."""
    torch.manual_seed(0)

    class NCHW(torch.nn.Module):  # the checker feeds (1, 3, H, W)
        def __init__(self):
            super().__init__()
            self.op = WindowACmix(3, 1, 4, shift)

        def forward(self, x):
            return self.op(x.permute(0, 2, 3, 1))

    module = FlatOutputs(NCHW()).eval()
    report = export_and_check(module, (8, 12), tmp_path / 'w.onnx',
                              dynamic=True, check_shapes=[(4, 3), (13, 9)])
    assert max(row['max_abs_diff'] for row in report['rows']) <= 1e-4


@pytest.mark.parametrize('name', sorted(BACKBONES))
def test_torch_export_with_dynamic_height_and_width(name):
    module, shape, others = backbone(name)
    program = export_program(module, torch.randn(1, 3, *shape)).module()
    for size in [shape] + others:
        x = torch.randn(1, 3, *size)
        with torch.no_grad():
            for got, expected in zip(program(x), module(x)):
                torch.testing.assert_close(got, expected, rtol=1e-4,
                                           atol=1e-5)


def test_layers_use_custom_functions_outside_export():
    """The export path is a branch taken only while exporting: in
    training and inference the layers run their custom autograd
    functions (whose backward keeps only the inputs)."""
    x = torch.randn(1, 16, 9, 9, requires_grad=True)
    for op in (SlidingACmix(16, 16), PatchwiseACmix(16, 16)):
        names = set()
        node = [op(x).grad_fn]
        while node:
            fn = node.pop()
            if fn is not None:
                names.add(type(fn).__name__)
                node += [f for f, _ in fn.next_functions]
        assert any(n.startswith('_') and 'Backward' in n for n in names)
    y = torch.randn(1, 9, 9, 16)
    assert SpatialReductionACmix(16, 2, 2)(y).shape == y.shape


TOY = REPO_ROOT / 'configs' / 'toy'


@pytest.mark.slow
def test_export_tool_toy_retinanet(tmp_path):
    """The tool on the toy RetinaNet PVT-ACmix: the detector's tensor
    forward at three sizes, odd ones included."""
    out = tmp_path / 'retinanet.onnx'
    proc = run_tool([
        'deployment/export_onnx.py', TOY / 'retinanet_pvt_acmix_toy_coco.py',
        '--shape', 64, 96, '--dynamic', '--check-shape', 97, 65,
        '--check-shape', 128, 129, '--out', out, '--repeat', 1
    ], cwd=tmp_path)
    assert out.is_file()
    assert 'RetinaNet tensor forward (mmdet' in proc.stdout
    rows = re.findall(r'^\s+(\d+x\d+)\s+(\S+)', proc.stdout, re.M)
    assert [size for size, _ in rows] == ['64x96', '97x65', '128x129']
    assert all(float(diff) <= 1e-4 for _, diff in rows)


@pytest.mark.parametrize('args, message', [
    (['missing.py', '--shape', 64, 64], "no config file 'missing.py'"),
    ([TOY / 'swin_acmix_toy_in1k.py', '--shape', 0, 64],
     'input sizes must be positive'),
])
def test_export_tool_errors(tmp_path, args, message):
    proc = run_tool(['deployment/export_onnx.py'] + args, cwd=tmp_path,
                    check=False)
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines()
              if line.startswith('error: ')]
    assert len(errors) == 1 and message in errors[0], proc.stderr[-2000:]


def deployment_commands():
    """The shell commands of docs/deployment.md."""
    text = (REPO_ROOT / 'docs' / 'deployment.md').read_text()
    blocks = re.findall(r'```bash\n(.*?)```', text, re.S)
    lines = '\n'.join(blocks).replace('\\\n', ' ').splitlines()
    return [shlex.split(line) for line in lines if line.strip()]


def test_deployment_doc_commands_are_export_runs():
    commands = deployment_commands()
    assert len(commands) >= 4
    for command in commands:
        assert command[:2] == ['python', 'tools/deployment/export_onnx.py']
        assert (REPO_ROOT / command[2]).is_file(), command


@pytest.mark.slow
@pytest.mark.parametrize('command', deployment_commands(),
                         ids=lambda command: Path(command[2]).stem)
def test_deployment_doc_commands(tmp_path, command):
    """Every command of docs/deployment.md, as written (real configs, in a
    temporary folder)."""
    args = [str(REPO_ROOT / arg) if arg.startswith('configs/') else arg
            for arg in command[2:]]
    proc = run_tool(['deployment/export_onnx.py'] + args, cwd=tmp_path,
                    timeout=7200)
    assert 'all within' in proc.stdout
