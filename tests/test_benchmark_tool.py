"""tools/analysis_tools/benchmark.py on two tiny entries: the JSON it writes
holds
what it measured, ratios to the first entry, and the peak memory of a
process per entry; bad input fails clearly."""
import importlib.util
import json

import pytest

from helpers import REPO_ROOT, run_tool

SWIN = str(REPO_ROOT / 'configs/toy/mask_rcnn_swin_acmix_toy_coco.py')
PVT = str(REPO_ROOT / 'configs/toy/retinanet_pvt_acmix_toy_coco.py')


def test_side_by_side_report(tmp_path):
    """A backbone alone against a whole detector (inference with its
    post-processing, train step with synthetic boxes and masks)."""
    out = tmp_path / 'bench.json'
    entries = [f'{SWIN}:backbone', PVT]
    proc = run_tool(['analysis_tools/benchmark.py', *entries, '--batch', '2',
                     '--shape', '64', '96', '--runs', '3', '--warmup', '1',
                     '--threads', '1', '--json', out], cwd=tmp_path)
    result = json.loads(out.read_text())
    assert result['entries'] == entries
    assert (result['batch'], result['shape']) == (2, [64, 96])
    for mode in ('train', 'infer'):
        rows = result['results'][mode]
        assert [row['entry'] for row in rows] == entries
        first = rows[0]['median_s']
        for row in rows:
            assert len(row['runs_s']) == 3
            assert row['min_s'] <= row['median_s'] <= row['max_s']
            assert row['ratio'] == pytest.approx(row['median_s'] / first)
            assert row['images_per_s'] == pytest.approx(2 / row['median_s'])
            memory = row['memory']  # a fresh process per entry
            assert memory['peak_mib'] >= memory['before_mib'] > 0
            assert memory['rise_mib'] == pytest.approx(
                memory['peak_mib'] - memory['before_mib'])
        assert f'{rows[1]["ratio"]:6.3f}x' in proc.stdout
    assert 'run 3/3' in proc.stdout  # progress


def test_bad_input(tmp_path):
    proc = run_tool(['analysis_tools/benchmark.py', SWIN], cwd=tmp_path,
                    check=False)
    assert proc.returncode != 0 and 'at least two entries' in proc.stderr
    proc = run_tool(['analysis_tools/benchmark.py', SWIN, 'no/such/config.py',
                     '--no-memory'], cwd=tmp_path, check=False)
    assert proc.returncode != 0
    assert "no config file 'no/such/config.py'" in proc.stderr
    proc = run_tool(['analysis_tools/benchmark.py', SWIN, '--compile', 'nope'],
                    cwd=tmp_path, check=False)
    assert proc.returncode != 0
    assert "unknown torch.compile backend 'nope'" in proc.stderr
    assert 'inductor' in proc.stderr  # the backends it knows


def test_tensor_memory_counts_live_tensors():
    """Peak and final bytes of the tensors a function leaves alive, exact
    (the measure of ``benchmark_unfold.py``'s peak memory)."""
    import torch

    from mmacmix.analysis.benchmark import tensor_memory_mib, tensors_mib
    kept = []

    def work():
        big = torch.empty(3 * 2**18)  # 3 MiB of float32
        kept.append(torch.empty(2**18))  # 1 MiB, left alive
        del big
        torch.empty(2**19)  # 2 MiB, freed at once

    peak, final = tensor_memory_mib(work)
    assert (peak, final) == (4, 1)
    base = torch.empty(2**18)
    assert tensors_mib([base, base[10:], torch.empty(2**17)]) == 1.5


def benchmark_exit(argv):
    """tools/analysis_tools/benchmark.py's ``main`` on bad input: the status or
    message it exits with (a message is printed as one line, status 1)."""
    spec = importlib.util.spec_from_file_location(
        'benchmark', REPO_ROOT / 'tools/analysis_tools/benchmark.py')
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    with pytest.raises(SystemExit) as stop:
        tool.main([str(a) for a in argv])
    return stop.value.code


@pytest.mark.parametrize('args, message', [
    (['--runs', '0'], '--runs must be at least 1, got 0'),
    (['--batch', '0'], '--batch must be at least 1, got 0'),
    (['--warmup', '-1'], '--warmup must be at least 0, got -1'),
    (['--threads', '0'], '--threads must be at least 1, got 0'),
    (['--shape', '64', '0'], '--shape must be two positive sizes, got '
     '[64, 0]'),
    (['--dtype', 'bf16', 'bf16'], "--dtype names a dtype twice: ['bf16', "
     "'bf16']"),
])
def test_bad_arguments(args, message, capsys):
    assert benchmark_exit([SWIN, PVT, *args]) == 2  # argparse's status
    assert capsys.readouterr().err.splitlines()[-1].endswith(
        f': error: {message}')


def test_input_too_small_for_the_model():
    resnet = REPO_ROOT / 'configs/toy/retinanet_resnet_acmix_toy_coco.py'
    assert benchmark_exit([f'{resnet}:backbone', f'{SWIN}:backbone',
                           '--shape', '40', '64', '--batch', '1', '--runs',
                           '1', '--warmup', '0', '--no-memory']) == (
        'error: ResNetACmix (depth 26) needs inputs of at least 49x49 '
        'pixels, got 40x64')


def test_torchvision_baseline_in_two_dtypes(tmp_path):
    """A torchvision classifier (the ResNet baseline) beside a config's
    classifier, each in fp32 and bf16 autocast in one process: the ratio is
    to the first entry in the same dtype, the dtype speed-up to the same
    entry in fp32."""
    out = tmp_path / 'bench.json'
    resnet = str(REPO_ROOT / 'configs/resnet_acmix_26_in1k.py')
    entries = ['torchvision::resnet18', resnet]
    proc = run_tool(['analysis_tools/benchmark.py', *entries, '--dtype',
                     'fp32', 'bf16', '--batch', '1', '--shape', '64', '64',
                     '--runs', '2', '--warmup', '1', '--threads', '1',
                     '--no-memory',
                     '--json', out, '--markdown', tmp_path / 'bench.md'],
                    cwd=tmp_path)
    result = json.loads(out.read_text())
    assert result['dtype'] == ['fp32', 'bf16']
    for rows in result['results'].values():
        assert [(r['entry'], r['dtype']) for r in rows] == [
            (e, d) for d in ('fp32', 'bf16') for e in entries]
        for first, other in (rows[:2], rows[2:]):
            assert first['ratio'] == 1
            assert other['ratio'] == pytest.approx(other['median_s'] /
                                                   first['median_s'])
        for fp32, bf16 in zip(rows[:2], rows[2:]):
            assert fp32['dtype_speedup'] == 1
            assert bf16['dtype_speedup'] == pytest.approx(
                fp32['median_s'] / bf16['median_s'])
    assert 'torchvision::resnet18 [bf16]' in proc.stdout
    table = (tmp_path / 'bench.md').read_text()
    assert '`torchvision::resnet18` bf16 (' in table


def test_unknown_torchvision_model():
    assert benchmark_exit(['torchvision::resnet51', SWIN, '--no-memory']) == (
        "error: 'torchvision::resnet51': torchvision.models has no model "
        "'resnet51' (e.g. torchvision::resnet50)")
