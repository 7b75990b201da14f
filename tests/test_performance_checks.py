"""The commands of docs/performance_checks.md: .dev_scripts/device_check.sh
on a machine without CUDA (it skips the CUDA parts and exits 0), the
benchmark commands (bf16, --compile) on a toy config's backbone, and the
bare-GPU commands (requirements/bare_gpu.txt's wheels, then the check) in
an environment of a GPU image's packages alone."""
import json
import os
import re
import shlex
import subprocess
import sys
from importlib.metadata import (PackageNotFoundError, distribution,
                                distributions)
from pathlib import Path

import pytest
import torch
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from helpers import REPO_ROOT, run_tool

DOC = REPO_ROOT / 'docs' / 'performance_checks.md'
TOY = str(REPO_ROOT / 'configs/toy/retinanet_pvt_acmix_toy_coco.py')
# what the benchmark commands of the page become here: a toy backbone,
# small inputs, one run; aot_eager compiles in seconds, inductor in minutes
SMALL = {'--batch': '1', '--runs': '1', '--warmup': '1'}


def doc_commands():
    blocks = re.findall(r'```bash\n(.*?)```', DOC.read_text(), re.S)
    text = '\n'.join(blocks).replace('\\\n', ' ')
    return [shlex.split(line) for line in text.splitlines() if line.strip()]


def small_benchmark_args(argv, tmp_path):
    """``argv`` (a benchmark command of the page) with its entries replaced
    by the toy backbone, small sizes, ``aot_eager`` for ``--compile`` and
    its output files in ``tmp_path``."""
    assert argv[:2] == ['python', 'tools/analysis_tools/benchmark.py'], argv
    args, entries, rest = [], 0, iter(argv[2:])
    for arg in rest:
        if arg.endswith(':backbone'):
            entries += 1
            args.append(f'{TOY}:backbone')
        elif arg in SMALL:
            args += [arg, SMALL[arg]]
            next(rest)
        elif arg in ('--json', '--markdown'):
            args += [arg, str(tmp_path / next(rest))]
        elif arg == '--compile':
            args += [arg, 'aot_eager', '--mode', 'train']
        else:
            args.append(arg)
    assert entries == 2
    return ['analysis_tools/benchmark.py'] + args + [
        '--shape', '64', '64', '--threads', '1']


def test_the_page_runs_these_commands():
    starts = [argv[:3] for argv in doc_commands()]
    assert starts == [
        ['bash', '.dev_scripts/device_check.sh', 'work_dirs/device_check'],
        ['python', '-m', 'pip'], ['python3', '-m', 'pip'],
        ['python', 'tools/analysis_tools/benchmark.py',
         'mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py:backbone'],
        ['python', 'tools/analysis_tools/benchmark.py',
         'configs/mask_rcnn_swin_acmix_t_1x_coco.py:backbone']]
    download, install = bare_gpu_commands()
    assert download.endswith(' -r requirements/bare_gpu.txt')
    assert install.endswith('bash .dev_scripts/device_check.sh')


@pytest.mark.skipif(torch.cuda.is_available(), reason='checks the CPU run')
def test_device_check_without_cuda_skips_the_cuda_parts(tmp_path):
    (argv, ) = [a for a in doc_commands() if a[1].endswith('.sh')]
    out = tmp_path / 'device_check'
    proc = run_tool(['.dev_scripts/device_check.sh', out], cwd=tmp_path,
                    CUDA_VISIBLE_DEVICES='')
    assert argv[2:] == ['work_dirs/device_check']  # the page's out dir
    text = proc.stdout
    for header in ('environment', '1. CUDA test cases',
                   '2. tools/dist_train.sh', '3. benchmark', 'summary'):
        assert f'==== {header}' in text
    # the CUDA test cases are collected and reported as skipped
    summary = re.search(r'^(\d+) skipped(, \d+ warnings?)? in ', text,
                        re.M)
    assert summary and int(summary.group(1)) > 20, text[-2000:]
    assert 'SKIPPED' in text and 'CUDA is not available' in text
    assert not re.search(r'\d+ (passed|failed|error)', text)
    assert 'PASSED: CUDA test cases' in text
    assert 'SKIPPED: tools/dist_train.sh with NCCL (no CUDA)' in text
    assert 'SKIPPED: benchmark on CUDA (3 pairs, fp32 and bf16)' in text
    assert (out / 'summary.txt').read_text().splitlines()[1:] == [
        'skipped: tools/dist_train.sh with NCCL (no CUDA)',
        'skipped: benchmark on CUDA (3 pairs, fp32 and bf16) (no CUDA)',
        'all checks passed']
    assert 'skipped' in (out / 'pytest.log').read_text()
    assert not (out / 'benchmark.md').exists()


def test_device_check_bad_arguments(tmp_path):
    proc = run_tool(['.dev_scripts/device_check.sh', 'a', 'b'], cwd=tmp_path,
                    check=False)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines() == [
        'error: usage: bash .dev_scripts/device_check.sh [OUT_DIR]']


def test_benchmark_commands_on_a_toy_backbone(tmp_path):
    """The fp32 and bf16 commands write their JSON; the --compile one
    measures every entry eager then compiled, with the speed-up of
    compiling, and appends a Markdown table."""
    commands = [a for a in doc_commands() if a[1].endswith('benchmark.py')]
    for argv in commands:
        run_tool(small_benchmark_args(argv, tmp_path) + ['--no-memory'],
                 cwd=tmp_path)
    both = json.loads((tmp_path / 'swin_bf16.json').read_text())
    assert both['dtype'] == ['fp32', 'bf16'] and both['compile'] is None
    for rows in both['results'].values():
        assert [(r['dtype'], r['compile']) for r in rows] == [
            ('fp32', None)] * 2 + [('bf16', None)] * 2
        for fp32, bf16 in zip(rows[:2], rows[2:]):
            assert bf16['dtype_speedup'] == pytest.approx(
                fp32['median_s'] / bf16['median_s'])
            assert fp32['dtype_speedup'] == 1

    table = (tmp_path / 'compile.md').read_text()
    rows = [line for line in table.splitlines() if line.startswith('| `')]
    assert len(rows) == 4  # 2 entries, eager and compiled, train only
    eager, compiled = rows[:2], rows[2:]
    assert all('compiled' not in row for row in eager)
    speedups = [float(re.search(r'compiled \(aot_eager, ([\d.]+)x eager',
                                row).group(1)) for row in compiled]
    assert all(s > 0 for s in speedups)


# ---------------------------------------------------------------------------
# On a bare GPU machine: requirements/bare_gpu.txt on top of the image
# ---------------------------------------------------------------------------
BARE_GPU = REPO_ROOT / 'requirements' / 'bare_gpu.txt'
IMAGE_PACKAGES = REPO_ROOT / 'tests' / 'data' / 'gpu_image_packages.txt'
# the GPU image has the headless build of the opencv that mmengine and mmcv
# ask for (the same cv2 module)
SAME_MODULE = {'opencv-python': 'opencv-python-headless'}
GPU_PYTHON = {'python_version': '3.12', 'python_full_version': '3.12.3'}


def requirement_lines(path):
    return [line.strip() for line in Path(path).read_text().splitlines()
            if line.strip() and not line.startswith('#')]


def image_packages():
    return {canonicalize_name(n) for n in requirement_lines(IMAGE_PACKAGES)}


def pins(path):
    """{name: version} of the ``name==version`` lines of ``path``."""
    reqs = [Requirement(line) for line in requirement_lines(path)]
    return {canonicalize_name(r.name): s.version for r in reqs
            for s in r.specifier if s.operator == '=='}


def needs_beyond_image():
    """The distributions the check's imports reach (the OpenMMLab stack of
    requirements/runtime.txt with mmcv, and pytest) that the image lacks,
    from the installed packages' metadata with the GPU machine's Python in
    the markers: {name: [requirements on it]}."""
    have = image_packages()
    # mmcv-lite; where compiled mmcv is installed instead, its needs (the
    # same) stand for mmcv-lite's
    mmcv = 'mmcv-lite'
    try:
        distribution(mmcv)
    except PackageNotFoundError:
        mmcv = 'mmcv'
    roots = [Requirement(line).name for line in
             requirement_lines(REPO_ROOT / 'requirements' / 'runtime.txt')]
    needed, stack = {}, [Requirement(n) for n in roots + [mmcv, 'pytest']]
    while stack:
        req = stack.pop()
        name = canonicalize_name(SAME_MODULE.get(req.name, req.name))
        if name in have:
            continue
        dist = distribution(name)
        name = 'mmcv-lite' if name == 'mmcv' else name  # the wheel carried
        needed.setdefault(name, []).append(req)
        if len(needed[name]) > 1:
            continue  # its own needs are on the stack already
        for line in dist.requires or []:
            sub = Requirement(line)
            if not sub.marker or sub.marker.evaluate(
                    {'extra': '', **GPU_PYTHON}):
                stack.append(sub)
    return needed


def test_bare_gpu_wheels_are_the_stack_beyond_the_image():
    """requirements/bare_gpu.txt names exactly the distributions the
    stack needs that the GPU image lacks, the OpenMMLab ones at the pins
    of the install, the others at versions every requirement on them
    accepts."""
    needed = needs_beyond_image()
    pinned = pins(BARE_GPU)
    assert len(pinned) == len(requirement_lines(BARE_GPU))  # all pinned
    assert sorted(pinned) == sorted(needed)
    stack = pins(REPO_ROOT / 'requirements' / 'runtime.txt')
    stack['mmcv-lite'] = '2.1.0'  # tools/setup_env.sh's, setup.py's extra
    for name, version in stack.items():
        if name in pinned:
            assert pinned[name] == version, name
    for name, reqs in needed.items():
        for req in reqs:
            assert req.specifier.contains(pinned[name]), (name, str(req))
    # torch, torchvision and the heavy compiled packages come with the image
    assert not {'torch', 'torchvision', 'numpy', 'opencv-python',
                'opencv-python-headless', 'scipy', 'matplotlib'} & set(pinned)


def bare_gpu_commands():
    """The page's download and GPU-machine command lines, as text."""
    blocks = re.findall(r'```bash\n(.*?)```', DOC.read_text(), re.S)
    lines = [line for line in '\n'.join(blocks).splitlines()
             if ' pip download ' in line or ' pip install ' in line]
    download, install = lines
    return download, install


def make_image_environment(root):
    """A Python whose packages are the image's alone (those of them
    installed here, linked), with pip: ``root/venv/bin/python``."""
    site = root / 'image'
    site.mkdir(parents=True)
    have = image_packages()
    for dist in distributions():
        name = canonicalize_name(dist.metadata['Name'])
        if SAME_MODULE.get(name, name) not in have:
            continue
        for top in {f.parts[0] for f in dist.files or []}:
            src = Path(dist.locate_file(top))
            if (top in ('..', '__pycache__') or top.endswith('.pth')
                    or not src.exists() or (site / top).exists()):
                continue
            (site / top).symlink_to(src)
    subprocess.run([sys._base_executable, '-m', 'venv', '--without-pip',
                    str(root / 'venv')], check=True)
    (venv_site, ) = (root / 'venv').glob('lib/python*/site-packages')
    (venv_site / 'image.pth').write_text(f'{site}\n')
    return root / 'venv' / 'bin' / 'python'


def run_shell(command, cwd, timeout=900, **env):
    base = {k: v for k, v in os.environ.items()
            if k not in ('PYTHONPATH', 'VIRTUAL_ENV', 'PYTHON')}
    proc = subprocess.run(['bash', '-c', command], cwd=cwd, timeout=timeout,
                          env={**base, 'OMP_NUM_THREADS': '1', **env},
                          capture_output=True, text=True)
    assert proc.returncode == 0, (
        f'{command}\n--- stdout ---\n{proc.stdout[-4000:]}\n'
        f'--- stderr ---\n{proc.stderr[-6000:]}')
    return proc


@pytest.mark.slow
def test_bare_gpu_commands_in_an_environment_of_the_image_packages(tmp_path):
    """The page's download command as written (Python 3.12 wheels: what
    travels), then for this machine's Python in an environment of the
    image's packages alone: the GPU-machine command (the check, its CUDA
    parts skipped here), and what the check runs on CUDA, on the CPU: a
    1-process dist_train.sh, the benchmark pairs, and every toy config's
    training through tools/train.py."""
    download, install = bare_gpu_commands()
    gpu_wheels = tmp_path / 'gpu_wheels'
    run_shell(download.replace('python ', f'{sys.executable} ', 1)
              .replace('-d .whl', f'-d {gpu_wheels}'), cwd=REPO_ROOT)
    wheels = sorted(p.name for p in gpu_wheels.glob('*.whl'))
    assert len(wheels) == len(pins(BARE_GPU))
    compiled = [w for w in wheels if not w.endswith('-none-any.whl')]
    assert [w.split('-')[0] for w in compiled] == ['pycocotools', 'shapely']
    assert all('-cp312-' in w and 'manylinux' in w for w in compiled)
    assert sum(p.stat().st_size for p in gpu_wheels.iterdir()) < 16e6

    here = f'{sys.version_info.major}.{sys.version_info.minor}'
    whl, site = tmp_path / 'whl', tmp_path / 'site'
    run_shell(download.replace('python ', f'{sys.executable} ', 1)
              .replace('--python-version 3.12', f'--python-version {here}')
              .replace('-d .whl', f'-d {whl}'), cwd=REPO_ROOT)
    python = make_image_environment(tmp_path / 'gpu')
    probe = subprocess.run([str(python), '-c', 'import mmengine'],
                           capture_output=True, text=True)
    assert 'No module named' in probe.stderr  # nothing of OpenMMLab yet
    out = tmp_path / 'out'
    proc = run_shell(
        install.replace('python3 ', f'{python} ', 1)
        .replace('PYTHON=python3', f'PYTHON={python}')
        .replace('/tmp/site', str(site)).replace('.whl/', f'{whl}/'),
        cwd=REPO_ROOT, OUT=str(out), CUDA_VISIBLE_DEVICES='')
    assert 'all checks passed' in (out / 'summary.txt').read_text()
    assert re.search(r'^\d+ skipped', proc.stdout, re.M)

    # what the check runs with CUDA, on the CPU in the same environment
    env = dict(PYTHON=str(python), PYTHONPATH=f'{REPO_ROOT}:{site}',
               CUDA_VISIBLE_DEVICES='')
    work = tmp_path / 'work'
    work.mkdir()
    run_shell(f'{python} {REPO_ROOT}/tools/misc/make_toy_data.py '
              '--out data/toy', cwd=work, **env)
    toy = REPO_ROOT / 'configs' / 'toy'
    run_shell(f'bash {REPO_ROOT}/tools/dist_train.sh '
              f'{toy}/retinanet_pvt_acmix_toy_coco.py 1 --work-dir dist',
              cwd=work, PORT='29655', **env)
    log = next((work / 'dist').glob('*/*.log')).read_text()
    assert 'Distributed training: True' in log
    assert (work / 'dist' / 'epoch_1.pth').is_file()
    script = (REPO_ROOT / '.dev_scripts' / 'device_check.sh').read_text()
    pairs = re.findall(r'^    "\w+ (\S+) (\S+)"$', script, re.M)
    assert len(pairs) == 3
    for baseline, ours in pairs:
        run_shell(f'{python} tools/analysis_tools/benchmark.py {baseline} '
                  f'{ours} --device cpu --dtype fp32 bf16 --batch 1 '
                  '--shape 128 128 --runs 1 --warmup 1 --threads 1',
                  cwd=REPO_ROOT, **env)
    for config in sorted(toy.glob('*.py')):
        run_shell(f'{python} {REPO_ROOT}/tools/train.py {config} '
                  f'--work-dir {config.stem}', cwd=work, **env)
        assert (work / config.stem / 'last_checkpoint').is_file()
