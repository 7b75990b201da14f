"""mmacmix.ops, the PyTorch stand-in for mmcv's compiled ``mmcv._ext``, and
the ``mmacmix_mmcv_lite`` hook that installs it where mmcv has none.

The functions are compared with compiled mmcv 2.1.0's outputs and gradients
recorded by .dev_scripts/record_mmcv_ops.py (tests/data/mmcv_ops.pt):
integers exactly, floats to 1e-5. mmcv's CPU build has no sigmoid focal
loss or deformable attention kernel; those are compared with their PyTorch
forms (the loss's formula, differentiated by autograd; mmcv's own
attention). The hook is run in fresh interpreters: one whose mmcv is a copy
of the installed one without its compiled extension (what mmcv-lite is),
and, where compiled mmcv is installed, one where it must be left alone.
"""
import ast
import importlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

import mmacmix.ops as ops

from helpers import REPO_ROOT, load_tool

DATA = torch.load(REPO_ROOT / 'tests' / 'data' / 'mmcv_ops.pt')
FLOAT = dict(rtol=1e-5, atol=1e-5)
MMCV_DIR = Path(importlib.util.find_spec('mmcv').origin).parent


# where mmcv is built with its ops (tools/setup_env.sh --full-mmcv): left
# out by default, `-m compiled_mmcv` runs them (tests/conftest.py)
needs_compiled_mmcv = pytest.mark.compiled_mmcv


def case_id(case):
    return '{name}-{iou_threshold}-{offset}'.format(**case)


@pytest.mark.parametrize('case', DATA['nms'], ids=case_id)
def test_nms_keeps_what_compiled_mmcv_keeps(case):
    keep = ops.nms(case['boxes'], case['scores'], case['iou_threshold'],
                   case['offset'])
    assert keep.dtype == torch.long
    assert torch.equal(keep, case['keep'])


@pytest.mark.parametrize('mode', [0, 1])
def test_roi_align_of_no_rois(mode):
    features, rois = torch.rand(2, 3, 5, 5), torch.zeros(0, 5)
    out = torch.zeros(0, 3, 2, 2)
    argmax = torch.zeros(0, 3, 2, 2) if mode == 0 else torch.zeros(0)
    ops.roi_align_forward(features, rois, out, argmax, argmax.clone(), 2, 2,
                          1.0, 0, mode, True)
    grad = torch.zeros_like(features)
    ops.roi_align_backward(out, rois, argmax, argmax.clone(), grad, 2, 2,
                           1.0, 0, mode, True)
    assert not grad.any()


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_nms_of_low_precision_boxes_is_that_of_their_float32_values(dtype):
    # compiled mmcv's CPU kernel reads float32 only; the widening is exact
    case = next(c for c in DATA['nms'] if c['name'] == 'clusters')
    boxes, scores = case['boxes'].to(dtype), case['scores'].to(dtype)
    keep = ops.nms(boxes, scores, 0.5, 0)
    assert torch.equal(keep, ops.nms(boxes.float(), scores.float(), 0.5, 0))
    assert 0 < len(keep) < len(boxes)


@pytest.mark.parametrize('case', DATA['softnms'],
                         ids=lambda c: f"method{c['method']}-"
                         f"{c['min_score']}-{len(c['boxes'])}")
def test_softnms_matches_compiled_mmcv(case):
    dets = case['boxes'].new_zeros(len(case['boxes']), 5)
    inds = ops.softnms(case['boxes'], case['scores'], dets,
                       case['iou_threshold'], case['sigma'],
                       case['min_score'], case['method'], case['offset'])
    assert torch.equal(inds, case['inds'])
    torch.testing.assert_close(dets[:len(inds)], case['dets'], **FLOAT)


def run_roi_align(case, dtype=None):
    features, rois, kwargs = case['features'], case['rois'], case['kwargs']
    if dtype is not None:
        features, rois = features.to(dtype), rois.to(dtype)
    shape = (len(rois), features.size(1), kwargs['aligned_height'],
             kwargs['aligned_width'])
    max_mode = kwargs['pool_mode'] == 0
    output = features.new_zeros(shape)
    argmax_y = features.new_zeros(shape if max_mode else 0)
    argmax_x = features.new_zeros(shape if max_mode else 0)
    ops.roi_align_forward(features, rois, output, argmax_y, argmax_x,
                          **kwargs)
    grad_input = features.new_zeros(features.shape)
    grad_output = case['grad_scale'].to(features.dtype).expand(shape)
    ops.roi_align_backward(grad_output.contiguous(), rois, argmax_y,
                           argmax_x, grad_input, **kwargs)
    return output, argmax_y, argmax_x, grad_input


def roi_id(case):
    kw = case['kwargs']
    mode = 'max' if kw['pool_mode'] == 0 else 'avg'
    return (f"{len(case['rois'])}rois-{case['features'].dtype}-{mode}"
            f"-s{kw['sampling_ratio']}"
            f"-{'aligned' if kw['aligned'] else 'legacy'}"
            f"-x{kw['spatial_scale']}")


FLOAT32_ROI_CASES = [
    c for c in DATA['roi_align'] if c['features'].dtype == torch.float32
]


@pytest.mark.parametrize('case', FLOAT32_ROI_CASES, ids=roi_id)
def test_roi_align_matches_compiled_mmcv(case):
    """Borders, RoIs larger than the map and beyond it, zero-size RoIs, one
    RoI and 2000; both modes, both alignments, fixed and adaptive grids."""
    output, argmax_y, argmax_x, grad_input = run_roi_align(case)
    torch.testing.assert_close(output, case['output'], **FLOAT)
    torch.testing.assert_close(grad_input, case['grad_input'], **FLOAT)
    # the winning sample's coordinates, exactly
    assert torch.equal(argmax_y, case['argmax_y'])
    assert torch.equal(argmax_x, case['argmax_x'])


def test_roi_align_half_computes_in_float32():
    """mmcv's CPU kernel computes fp16 features in fp16 arithmetic (even
    the sample coordinates); the backend computes in float32 and returns
    fp16: what float32 gives, rounded, and close to compiled mmcv's."""
    (case, ) = [c for c in DATA['roi_align'] if c['features'].dtype ==
                torch.float16]
    output, _, _, grad_input = run_roi_align(case)
    assert output.dtype == grad_input.dtype == torch.float16
    wide = dict(case, features=case['features'].float(),
                rois=case['rois'].float(), grad_scale=case['grad_scale'])
    output32, _, _, grad32 = run_roi_align(wide)
    torch.testing.assert_close(output, output32.half(), rtol=0, atol=0)
    torch.testing.assert_close(grad_input, grad32.half(), rtol=0, atol=0)
    torch.testing.assert_close(output, case['output'], rtol=0, atol=2e-2)
    torch.testing.assert_close(grad_input, case['grad_input'], rtol=0,
                               atol=5e-2)


@pytest.mark.parametrize('mode', [0, 1])
def test_roi_align_bfloat16(mode):
    # compiled mmcv has no bf16 kernel: float32's result, in bf16
    case = next(c for c in FLOAT32_ROI_CASES
                if c['kwargs']['pool_mode'] == mode)
    output, _, _, grad_input = run_roi_align(case, torch.bfloat16)
    assert output.dtype == grad_input.dtype == torch.bfloat16
    ref_output, _, _, ref_grad = run_roi_align(
        dict(case, features=case['features'].bfloat16().float(),
             rois=case['rois'].bfloat16().float()))
    torch.testing.assert_close(output, ref_output.bfloat16())
    if mode == 1:
        # (in max mode the winners' coordinates are kept in bf16 too, as
        # mmcv keeps them in the input's dtype, so its gradient moves)
        torch.testing.assert_close(grad_input, ref_grad.bfloat16(),
                                   rtol=1.6e-2, atol=1e-3)


def focal_reference(logits, target, weight, gamma, alpha):
    """The focal loss per logit in float64 (the CUDA kernel's formula)."""
    x = logits.double().requires_grad_()
    p = torch.sigmoid(x)
    positive = target[:, None] == torch.arange(x.size(1))
    loss = torch.where(positive, -alpha * (1 - p)**gamma * torch.log(p),
                       -(1 - alpha) * p**gamma * torch.log(1 - p))
    if weight is not None:
        inside = target < x.size(1)
        loss = loss * torch.where(
            inside, weight.double()[target.clamp(max=x.size(1) - 1)],
            1)[:, None]
    (grad, ) = torch.autograd.grad(loss.sum(), x)
    return loss.detach(), grad


@pytest.mark.parametrize('dtype', [torch.float64, torch.float32])
@pytest.mark.parametrize('weighted', [False, True])
@pytest.mark.parametrize('gamma', [2.0, 1.5])
def test_sigmoid_focal_loss_forward_and_backward(weighted, gamma, dtype):
    gen = torch.Generator().manual_seed(3)
    logits = (torch.randn(64, 5, generator=gen) * 3).to(dtype)
    # class 5 is background
    target = torch.randint(0, 6, (64, ), generator=gen)
    weight = torch.rand(5, generator=gen) if weighted else None
    loss, grad = torch.empty_like(logits), torch.empty_like(logits)
    w = weight if weighted else logits.new_empty(0)
    ops.sigmoid_focal_loss_forward(logits, target, w, loss, gamma, 0.25)
    ops.sigmoid_focal_loss_backward(logits, target, w, grad, gamma, 0.25)
    ref_loss, ref_grad = focal_reference(logits, target, weight, gamma, 0.25)
    # float32's log(1 - p) loses digits for confident logits
    tol = FLOAT if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(loss.double(), ref_loss, **tol)
    torch.testing.assert_close(grad.double(), ref_grad, **tol)


def test_ms_deform_attn_is_mmcv_pytorch_form_with_its_gradients():
    from mmcv.ops.multi_scale_deform_attn import \
        multi_scale_deformable_attn_pytorch
    gen = torch.Generator().manual_seed(4)
    shapes = torch.tensor([[6, 8], [3, 4]])
    starts = torch.tensor([0, 48])
    value = torch.randn(2, 60, 2, 4, generator=gen, dtype=torch.float64)
    loc = torch.rand(2, 5, 2, 2, 3, 2, generator=gen, dtype=torch.float64)
    attn = torch.rand(2, 5, 2, 2, 3, generator=gen, dtype=torch.float64)
    output = ops.ms_deform_attn_forward(value, shapes, starts, loc, attn, 64)
    inputs = [t.clone().requires_grad_() for t in (value, loc, attn)]
    ref = multi_scale_deformable_attn_pytorch(inputs[0], [(6, 8), (3, 4)],
                                              *inputs[1:])
    torch.testing.assert_close(output, ref.detach(), rtol=0, atol=0)
    grad_output = torch.randn(ref.shape, generator=gen, dtype=torch.float64)
    ref_grads = torch.autograd.grad(ref, inputs, grad_output)
    grads = [torch.zeros_like(t) for t in (value, loc, attn)]
    ops.ms_deform_attn_backward(value, shapes, starts, loc, attn,
                                grad_output, *grads, 64)
    for grad, ref_grad in zip(grads, ref_grads):
        torch.testing.assert_close(grad, ref_grad, **FLOAT)


def load_ext_names():
    """Every name mmcv's ``mmcv/ops/*.py`` ask ``load_ext`` for."""
    names = set()
    for path in (MMCV_DIR / 'ops').glob('*.py'):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call)
                    and getattr(node.func, 'attr', None) == 'load_ext'):
                names.update(e.value for e in node.args[1].elts)
    return names


def test_every_name_mmcv_ops_ask_for_exists():
    names = load_ext_names()
    assert len(names) > 100
    assert names == set(ops.MMCV_EXT_NAMES)
    assert all(callable(getattr(ops, name)) for name in names)
    assert set(ops.IMPLEMENTED) <= names


@pytest.mark.parametrize('args', [(), (1, 'x', None), (torch.zeros(3), )])
def test_unsupported_ops_raise_one_clear_error_on_any_input(args):
    for name in sorted(set(ops.MMCV_EXT_NAMES) - set(ops.IMPLEMENTED)):
        with pytest.raises(ops.CompiledOpMissing) as info:
            getattr(ops, name)(*args, output=torch.zeros(1))
        message = str(info.value)
        assert repr(name) in message
        assert 'mmcv built with its compiled ops' in message
        assert 'MMCV_WITH_OPS=1 pip install' in message


def test_bad_input_to_implemented_ops_raises_value_errors():
    boxes = torch.rand(4, 4)
    with pytest.raises(ValueError, match='nms'):
        ops.nms(torch.rand(4, 5), torch.rand(4), 0.5, 0)
    with pytest.raises(ValueError, match='nms'):
        ops.nms(boxes, torch.rand(3), 0.5, 0)
    with pytest.raises(ValueError, match='method'):
        ops.softnms(boxes, torch.rand(4), torch.zeros(4, 5), 0.3, 0.5, 0.0,
                    7, 0)
    features, rois = torch.rand(1, 2, 5, 5), torch.tensor([[0., 0, 0, 4, 4]])
    out = torch.zeros(1, 2, 2, 2)
    empty = torch.zeros(0)
    with pytest.raises(ValueError, match='pool_mode'):
        ops.roi_align_forward(features, rois, out, empty, empty, 2, 2, 1.0,
                              0, 5, True)
    with pytest.raises(ValueError, match='batch'):
        ops.roi_align_forward(features, rois + torch.tensor([3., 0, 0, 0, 0]),
                              out, empty, empty, 2, 2, 1.0, 0, 1, True)
    with pytest.raises(ValueError, match='expected'):
        ops.roi_align_forward(features, rois, torch.zeros(1, 2, 3, 3), empty,
                              empty, 2, 2, 1.0, 0, 1, True)
    with pytest.raises(ValueError, match='argmax_y'):
        ops.roi_align_backward(out, rois, empty, empty,
                               torch.zeros_like(features), 2, 2, 1.0, 0, 0,
                               True)
    with pytest.raises(RuntimeError, match='x2 >= x1'):
        ops.roi_align_forward(features, rois[:, [0, 3, 2, 1, 4]], out, empty,
                              empty, 2, 2, 1.0, 0, 1, True)
    with pytest.raises(ValueError, match='sigmoid_focal_loss'):
        ops.sigmoid_focal_loss_forward(torch.rand(3), torch.zeros(
            3, dtype=torch.long), empty, torch.zeros(3), 2.0, 0.25)


def test_version_queries():
    assert ops.get_compiling_cuda_version() == 'not available'
    assert 'mmacmix' in ops.get_compiler_version()


# --- the hook, in fresh interpreters ----------------------------------------

LITE_SCRIPT = r'''
import json, sys
import torch
from mmdet.apis import DetInferencer  # noqa: F401  (as a user script)
from mmcv.ops import RoIAlign, batched_nms, nms
from mmcv.ops import DeformConv2d
import mmcv._ext
boxes = torch.tensor(json.loads(sys.argv[1]))
scores = torch.tensor(json.loads(sys.argv[2]))
_, keep = nms(boxes, scores, 0.5)
features = torch.rand(1, 2, 8, 8, requires_grad=True)
rois = torch.tensor([[0., 1, 1, 9, 9]])
RoIAlign(2, 0.5, 0)(features, rois).sum().backward()
try:
    DeformConv2d(2, 2, 3)(features.detach(), torch.zeros(1, 18, 6, 6))
except NotImplementedError as e:
    error = str(e)
print(json.dumps(dict(ext=mmcv._ext.__file__, keep=keep.tolist(),
                      mmacmix_imported='mmacmix' in sys.modules,
                      grad=features.grad.abs().sum().item(), error=error)))
'''


def site_packages():
    return [p for p in sys.path if p.endswith('site-packages')]


def fresh_venv(tmp_path, mmcv_dir=None, hook_pth=True):
    """A venv whose site-packages holds ``mmcv_dir`` (if given), a .pth
    naming this checkout and the test environment's site-packages (in which
    .pth files are not processed), and mmacmix's .pth as installed (unless
    not ``hook_pth``: mmacmix found on a path, as from PYTHONPATH)."""
    venv = tmp_path / 'venv'
    subprocess.run([sys._base_executable, '-m', 'venv', '--without-pip',
                    str(venv)], check=True)
    (site, ) = venv.glob('lib/python*/site-packages')
    if mmcv_dir is not None:
        shutil.copytree(mmcv_dir, site / 'mmcv')
    (site / '_parents.pth').write_text(
        '\n'.join([str(REPO_ROOT), *site_packages()]) + '\n')
    if hook_pth:
        (site / 'mmacmix_mmcv_lite.pth').write_text(
            'import mmacmix_mmcv_lite; mmacmix_mmcv_lite.install()\n')
    return venv / 'bin' / 'python'


def run_python(python, *args, cwd):
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    proc = subprocess.run([str(python), *args], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc.stdout


def test_plain_script_runs_mmcv_ops_through_the_backend_on_mmcv_lite(
        tmp_path):
    lite = tmp_path / 'mmcv-lite'
    shutil.copytree(MMCV_DIR, lite, ignore=shutil.ignore_patterns(
        '_ext*.so', '__pycache__'))
    python = fresh_venv(tmp_path, lite)
    # without the hook this mmcv has no ops, as mmcv-lite
    probe = run_python(
        python, '-c', 'import importlib.util, sys, mmacmix_mmcv_lite as h; '
        'sys.meta_path.remove(h.MmcvExtFinder); '
        'print(importlib.util.find_spec("mmcv._ext"))', cwd=tmp_path)
    assert probe.strip() == 'None'
    case = next(c for c in DATA['nms']
                if c['name'] == 'random' and c['iou_threshold'] == 0.5
                and c['offset'] == 0)
    out = json.loads(
        run_python(python, '-c', LITE_SCRIPT,
                   json.dumps(case['boxes'].tolist()),
                   json.dumps(case['scores'].tolist()),
                   cwd=tmp_path).splitlines()[-1])
    assert out['ext'] == str(REPO_ROOT / 'mmacmix' / 'ops' / '__init__.py')
    assert not out['mmacmix_imported']
    # float32 round-trips through JSON exactly
    assert out['keep'] == case['keep'].tolist()
    assert out['grad'] > 0
    assert "'deform_conv_forward'" in out['error']


def test_import_mmacmix_gives_mmcv_lite_its_ops_where_no_pth_ran(tmp_path):
    """mmacmix on a path whose .pth files do not run (a checkout on
    PYTHONPATH, ``pip install --target``): mmcv-lite has no ops until
    ``import mmacmix``, then the backend's."""
    lite = tmp_path / 'mmcv-lite'
    shutil.copytree(MMCV_DIR, lite, ignore=shutil.ignore_patterns(
        '_ext*.so', '__pycache__'))
    python = fresh_venv(tmp_path, lite, hook_pth=False)
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    bare = subprocess.run([str(python), '-c', 'import mmcv.ops'], cwd=tmp_path,
                          env=env, capture_output=True, text=True)
    assert bare.returncode != 0
    assert "No module named 'mmcv._ext'" in bare.stderr
    out = run_python(
        python, '-c', 'import mmacmix, torch, mmcv._ext; '
        'from mmcv.ops import nms; '
        'boxes = torch.tensor([[0., 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, '
        '30]]); _, keep = nms(boxes, torch.tensor([.9, .8, .7]), 0.5); '
        'print(mmcv._ext.__file__, keep.tolist())', cwd=tmp_path)
    ext, keep = out.split(' ', 1)
    assert ext == str(REPO_ROOT / 'mmacmix' / 'ops' / '__init__.py')
    assert keep.strip() == '[0, 2]'


def test_hook_imports_nothing_at_interpreter_start(tmp_path):
    python = fresh_venv(tmp_path)
    out = run_python(
        python, '-c', 'import sys, mmacmix_mmcv_lite as h; '
        'print(h.MmcvExtFinder in sys.meta_path, sorted(m for m in '
        'sys.modules if m.split(".")[0] in ("torch", "mmcv", "mmacmix")))',
        cwd=tmp_path)
    assert out.split(None, 1) == ['True', '[]\n']


def test_hook_leaves_an_mmcv_ext_it_did_not_make_alone(tmp_path):
    """Where another finder has ``mmcv._ext`` (here a stand-in module in a
    copy of mmcv, where compiled mmcv has its .so), the hook does not
    answer."""
    mmcv = tmp_path / 'copy' / 'mmcv'
    shutil.copytree(MMCV_DIR, mmcv, ignore=shutil.ignore_patterns(
        '_ext*.so', '__pycache__'))
    (mmcv / '_ext.py').write_text('STAND_IN = True\n')
    python = fresh_venv(tmp_path, mmcv)
    out = run_python(
        python, '-c', 'import sys, mmcv._ext; '
        'print(mmcv._ext.__file__, mmcv._ext.STAND_IN, '
        '"mmacmix" in sys.modules)', cwd=tmp_path)
    ext, stand_in, imported = out.split()
    assert ext.endswith('site-packages/mmcv/_ext.py')
    assert (stand_in, imported) == ('True', 'False')


@needs_compiled_mmcv
def test_hook_leaves_compiled_mmcv_alone(tmp_path):
    python = fresh_venv(tmp_path)
    out = run_python(
        python, '-c', 'import sys, mmcv.ops, mmcv._ext; '
        'print(mmcv._ext.__file__, "mmacmix" in sys.modules)', cwd=tmp_path)
    ext, imported = out.split()
    assert Path(ext).parent == MMCV_DIR and ext.endswith('.so')
    assert imported == 'False'


@needs_compiled_mmcv
def test_backend_through_mmcv_autograd_matches_compiled(monkeypatch):
    """mmcv's own RoIAlign and nms code with ``ext_module`` the backend
    (as the benchmark swaps them) against the compiled one."""
    # (mmcv.ops exports functions of these modules' names)
    mmcv_nms = importlib.import_module('mmcv.ops.nms')
    mmcv_roi_align = importlib.import_module('mmcv.ops.roi_align')
    gen = torch.Generator().manual_seed(5)
    features = torch.randn(2, 4, 16, 20, generator=gen)
    rois = DATA['roi_align'][0]['rois']
    results = []
    for backend in (mmcv_roi_align.ext_module, ops):
        monkeypatch.setattr(mmcv_roi_align, 'ext_module', backend)
        monkeypatch.setattr(mmcv_nms, 'ext_module', backend)
        x = features.clone().requires_grad_()
        out = mmcv_roi_align.roi_align(x, rois, (7, 7), 0.5, 0, 'avg', True)
        out.pow(2).sum().backward()
        case = DATA['nms'][0]
        dets, keep = mmcv_nms.batched_nms(
            case['boxes'], case['scores'],
            torch.arange(len(case['boxes'])) % 3,
            dict(type='nms', iou_threshold=0.5))
        results.append((out.detach(), x.grad, dets, keep))
    for ours, compiled in zip(results[1], results[0]):
        torch.testing.assert_close(ours, compiled, **FLOAT)


def test_setup_py_installs_the_hook_in_wheel_and_editable_installs(tmp_path):
    """The wheel and the editable wheel (what ``pip install -e`` installs)
    both hold the hook module's way in and the .pth at their root."""
    source = tmp_path / 'src'
    shutil.copytree(REPO_ROOT, source, ignore=shutil.ignore_patterns(
        '.git', '.venv*', 'work_dirs', 'data', 'build', 'dist',
        '__pycache__', '*.egg-info', 'checkpoints', '.pytest_cache'))
    out = tmp_path / 'wheels'
    for hook in ('build_wheel', 'build_editable'):
        run_python(sys.executable, '-c',
                   'import sys; from setuptools import build_meta; '
                   f'build_meta.{hook}(sys.argv[1])', str(out), cwd=source)
    # mmacmix-X-0.editable-py3-none-any.whl sorts before mmacmix-X-py3-...
    editable, wheel = sorted(out.glob('*.whl'))
    assert '.editable-' in editable.name and '.editable-' not in wheel.name
    line = 'import mmacmix_mmcv_lite; mmacmix_mmcv_lite.install()\n'
    with zipfile.ZipFile(wheel) as z:
        assert z.read('mmacmix_mmcv_lite.pth').decode() == line
        assert 'mmacmix_mmcv_lite.py' in z.namelist()
        assert 'mmacmix/ops/roi_align.py' in z.namelist()
    with zipfile.ZipFile(editable) as z:
        assert z.read('mmacmix_mmcv_lite.pth').decode() == line
        finder = next(n for n in z.namelist() if n.endswith('finder.py'))
        assert "'mmacmix_mmcv_lite'" in z.read(finder).decode()


@needs_compiled_mmcv
def test_benchmark_tool_alternates_both_backends(tmp_path):
    """The benchmark's train steps with mmacmix.ops go through it (its
    functions are called), and the compiled extension is back after."""
    import mmacmix.ops.roi_align as backend_roi_align
    tool = load_tool('analysis_tools/benchmark_mmcv_ops.py')
    calls = []
    forward = backend_roi_align.roi_align_forward

    def counted(*args, **kwargs):
        calls.append(1)
        return forward(*args, **kwargs)

    compiled = tool.ext_modules()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ops, 'roi_align_forward', counted)
        result = tool.main([
            str(REPO_ROOT / 'configs/toy/mask_rcnn_swin_acmix_toy_coco.py'),
            '--shape', '96', '96', '--runs', '2', '--warmup', '0', '--json',
            str(tmp_path / 'out.json')
        ])
    assert calls, 'the backend was not used'
    assert all(m.ext_module is ext for m, ext in compiled.items())
    assert set(result['runs_s']) == {'compiled', 'mmacmix.ops'}
    assert all(len(t) == 2 for t in result['runs_s'].values())
    assert json.loads((tmp_path / 'out.json').read_text())['ratio'] > 0


def test_ops_run_on_one_thread_and_restore_torchs_count():
    seen = []
    probe = ops._threads.one_thread(lambda: seen.append(
        torch.get_num_threads()))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        probe()
        case = DATA['nms'][0]
        ops.nms(case['boxes'], case['scores'], 0.5, 0)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert seen == [1]


DET_INFERENCER_SCRIPT = '''
import json, sys
from mmdet.apis import DetInferencer
from mmengine import Config
first = [m for m in sys.modules if m.split('.')[0] == 'mmacmix']
config, image = sys.argv[1:]
cfg = Config.fromfile(config)
cfg.model.test_cfg.score_thr = 0  # random weights: keep every box for NMS
inferencer = DetInferencer(model=cfg, weights=None, device='cpu',
                           show_progress=False)
result = inferencer(image, return_datasamples=True)
instances = result['predictions'][0].pred_instances
import mmcv._ext
print(json.dumps(dict(before=first, boxes=list(instances.bboxes.shape),
                      ext=mmcv._ext.__file__)))
'''


def test_plain_det_inferencer_script_runs_the_toy_retinanet(toy_root):
    """A user's script that never imports mmacmix itself: mmdet's
    DetInferencer on the toy RetinaNet PVT-ACmix (whose config imports
    mmacmix), its NMS through whichever mmcv._ext this install has (the
    hook's on mmcv-lite, compiled mmcv's where it is built)."""
    config = REPO_ROOT / 'configs/toy/retinanet_pvt_acmix_toy_coco.py'
    (image, ) = sorted((toy_root / 'coco' / 'val2017').glob('*.jpg'))[:1]
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    proc = subprocess.run(
        [sys.executable, '-c', DET_INFERENCER_SCRIPT, str(config),
         str(image)], capture_output=True, text=True, cwd=toy_root.parent,
        env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out['before'] == []
    # RetinaNet's test_cfg keeps at most 100 boxes after NMS
    assert out['boxes'][1] == 4 and 0 < out['boxes'][0] <= 100
    assert out['ext'].endswith(('.so', 'mmacmix/ops/__init__.py'))
