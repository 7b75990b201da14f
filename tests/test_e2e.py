"""End to end on the toy data with the real runners: train -> checkpoint ->
tools/test.py metrics, resume, a killed run, distributed on CPU."""
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from helpers import (REPO_ROOT, logged_train_iters, printed_metrics, run_tool,
                     tool_env, wait_for_file)

DET = REPO_ROOT / 'configs/toy/mask_rcnn_swin_acmix_toy_coco.py'
SEG = REPO_ROOT / 'configs/toy/fpn_swin_acmix_toy_ade20k.py'
CLS = REPO_ROOT / 'configs/toy/swin_acmix_toy_in1k.py'
ITERS_PER_EPOCH = 4  # 16 toy COCO train images, batch 4


def epochs(n):
    return ['--cfg-options', f'train_cfg.max_epochs={n}',
            f'train_cfg.val_interval={n}']


def _plain_load(path):
    return torch.load(path, map_location='cpu', weights_only=True)


@pytest.fixture(scope='module')
def det_run(toy_workspace):
    """One epoch of the toy detector; later tests resume from it."""
    work_dir = toy_workspace / 'work_dirs/det'
    run_tool(['train.py', DET, '--work-dir', work_dir, *epochs(1)],
             cwd=toy_workspace)
    return work_dir


def test_det_train_checkpoint_test(det_run, toy_workspace):
    ckpt = det_run / 'epoch_1.pth'
    state = _plain_load(ckpt)  # mmengine's own checkpoint, weights_only
    assert state['meta']['epoch'] == 1
    assert state['meta']['iter'] == ITERS_PER_EPOCH
    proc = run_tool(['test.py', DET, ckpt, '--work-dir',
                     toy_workspace / 'work_dirs/det_test'], cwd=toy_workspace)
    metrics = printed_metrics(proc)
    for key in ('coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/segm_mAP'):
        assert 0.0 <= metrics[key] <= 1.0


def test_resume_continues_at_the_right_iteration(det_run, toy_workspace):
    work_dir = toy_workspace / 'work_dirs/det_resume'
    run_tool(['train.py', DET, '--work-dir', work_dir, '--resume',
              det_run / 'epoch_1.pth', *epochs(2)], cwd=toy_workspace)
    state = _plain_load(work_dir / 'epoch_2.pth')
    assert state['meta']['epoch'] == 2
    assert state['meta']['iter'] == 2 * ITERS_PER_EPOCH
    # the resumed run trained only the second epoch
    (iters, ) = logged_train_iters(work_dir)
    assert min(iters) > ITERS_PER_EPOCH


def test_killed_run_resumes_from_last_checkpoint(toy_workspace):
    work_dir = toy_workspace / 'work_dirs/det_killed'
    cmd = [sys.executable, str(REPO_ROOT / 'tools/train.py'), str(DET),
           '--work-dir', str(work_dir), *epochs(3)]
    proc = subprocess.Popen(cmd, cwd=toy_workspace, env=tool_env(),
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_for_file(work_dir / 'epoch_1.pth', proc, poll=0.5)
        time.sleep(1)  # into epoch 2, not at its end
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not (work_dir / 'epoch_3.pth').exists()
    last = Path((work_dir / 'last_checkpoint').read_text().strip())
    assert last.name in ('epoch_1.pth', 'epoch_2.pth')
    resumed_from = _plain_load(last)['meta']['iter']

    run_tool(['train.py', DET, '--work-dir', work_dir, '--resume',
              *epochs(3)], cwd=toy_workspace)
    assert _plain_load(work_dir / 'epoch_3.pth')['meta']['iter'] == (
        3 * ITERS_PER_EPOCH)
    # the second run picked up where the killed one had saved
    assert min(logged_train_iters(work_dir)[-1]) > resumed_from


def test_seg_train_and_test_miou(toy_workspace):
    work_dir = toy_workspace / 'work_dirs/seg'
    run_tool(['train.py', SEG, '--work-dir', work_dir, '--cfg-options',
              'train_cfg.max_iters=4', 'train_cfg.val_interval=4',
              'default_hooks.checkpoint.interval=4'], cwd=toy_workspace)
    proc = run_tool(['test.py', SEG, work_dir / 'iter_4.pth', '--work-dir',
                     work_dir], cwd=toy_workspace)
    metrics = printed_metrics(proc)
    assert 0.0 <= metrics['mIoU'] <= 100.0
    assert 0.0 <= metrics['aAcc'] <= 100.0


def test_cls_train_and_test_accuracy(toy_workspace):
    work_dir = toy_workspace / 'work_dirs/cls'
    run_tool(['train.py', CLS, '--work-dir', work_dir, '--cfg-options',
              'train_cfg.max_epochs=1', 'train_cfg.val_interval=1'],
             cwd=toy_workspace)
    proc = run_tool(['test.py', CLS, work_dir / 'epoch_1.pth', '--work-dir',
                     work_dir], cwd=toy_workspace)
    metrics = printed_metrics(proc)
    # 9 val images: top-1 is a multiple of 100/9
    assert metrics['accuracy/top1'] * 9 / 100 == pytest.approx(
        round(metrics['accuracy/top1'] * 9 / 100), abs=1e-3)


def _same_checkpoint_layout(a, b):
    a, b = _plain_load(a), _plain_load(b)
    assert a.keys() == b.keys()
    assert a['state_dict'].keys() == b['state_dict'].keys()
    for k, v in a['state_dict'].items():
        assert v.shape == b['state_dict'][k].shape


def test_dist_train_two_cpu_processes(det_run, toy_workspace):
    work_dir = toy_workspace / 'work_dirs/det_dist'
    proc = run_tool(['dist_train.sh', DET, 2, '--work-dir', work_dir,
                     *epochs(1)], cwd=toy_workspace, PORT='29611')
    log = next(work_dir.glob('*/*.log')).read_text()
    assert 'Distributed training: True' in log
    assert 'world_size: 2' in log or 'GPU number: 2' in log, proc.stdout[-500:]
    _same_checkpoint_layout(work_dir / 'epoch_1.pth', det_run / 'epoch_1.pth')
    # two processes with batch 4 each: half the iterations per epoch
    assert _plain_load(work_dir / 'epoch_1.pth')['meta']['iter'] == (
        ITERS_PER_EPOCH // 2)
    # and dist_test.sh evaluates it with 2 processes
    proc = run_tool(['dist_test.sh', DET, work_dir / 'epoch_1.pth', 2,
                     '--work-dir', work_dir], cwd=toy_workspace,
                    PORT='29612')
    assert 0.0 <= printed_metrics(proc)['coco/segm_mAP'] <= 1.0


def test_dist_train_two_simulated_nodes(det_run, toy_workspace):
    work_dir = toy_workspace / 'work_dirs/det_2nodes'
    env = tool_env(NNODES='2', PORT='29622', MASTER_ADDR='127.0.0.1')
    cmd = ['bash', str(REPO_ROOT / 'tools/dist_train.sh'), str(DET), '1',
           '--work-dir', str(work_dir), *epochs(1)]
    nodes = [subprocess.Popen(cmd, cwd=toy_workspace,
                              env={**env, 'NODE_RANK': str(rank)},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True) for rank in (0, 1)]
    outputs = [node.communicate(timeout=600)[0] for node in nodes]
    for node, output in zip(nodes, outputs):
        assert node.returncode == 0, output[-4000:]
    _same_checkpoint_layout(work_dir / 'epoch_1.pth', det_run / 'epoch_1.pth')


def test_hostile_checkpoint_refused_by_test_tool(toy_workspace, tmp_path):
    marker = tmp_path / 'pwned'
    hostile = tmp_path / 'hostile.pth'
    payload = (f"import os, torch\n"
               f"class P:\n"
               f"    def __reduce__(self):\n"
               f"        return (os.system, ('touch {marker}',))\n"
               f"torch.save({{'state_dict': {{}}, 'meta': P()}}, "
               f"'{hostile}')\n")
    subprocess.run([sys.executable, '-c', payload], check=True)
    proc = run_tool(['test.py', DET, hostile], cwd=toy_workspace, check=False)
    assert proc.returncode != 0
    assert 'error: refused to load checkpoint' in proc.stderr
    assert 'posix.system' in proc.stderr
    assert not marker.exists()
