"""The commands of docs/performance_checks.md: .dev_scripts/device_check.sh
on a machine without CUDA (it skips the CUDA parts and exits 0), and the
benchmark commands (bf16, --compile) on a toy config's backbone."""
import json
import re
import shlex

import pytest
import torch

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
    names = [argv[1] for argv in doc_commands()]
    assert names == ['.dev_scripts/device_check.sh'] + [
        'tools/analysis_tools/benchmark.py'] * 2


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
