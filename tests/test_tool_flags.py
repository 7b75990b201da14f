"""tools/train.py --auto-scale-lr and --tensorboard, tools/test.py --show-dir,
with the real runners on the toy data, and their errors on configs that
cannot take them."""
import json
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

from mmacmix.analysis.complexity import build_model

from helpers import REPO_ROOT, printed_metrics, run_tool

TOY = REPO_ROOT / 'configs' / 'toy'
CLS = TOY / 'swin_acmix_toy_in1k.py'
SEG = TOY / 'fpn_swin_acmix_toy_ade20k.py'
DET = TOY / 'mask_rcnn_swin_acmix_toy_coco.py'
# config -> number of test images in the toy data (conftest.py)
TEST_IMAGES = {DET: 4, SEG: 4, CLS: 9}


def error_lines(proc):
    return [line for line in proc.stderr.splitlines()
            if line.startswith('error:')]


def test_auto_scale_lr_and_tensorboard(toy_workspace, tmp_path):
    """lr x (1 process x batch 8) / base 16, constant over the epoch; a
    TensorBoard event file beside the local scalars."""
    work_dir = tmp_path / 'work'
    run_tool(['train.py', CLS, '--work-dir', work_dir, '--auto-scale-lr',
              '--tensorboard', '--cfg-options', 'train_cfg.max_epochs=1',
              'auto_scale_lr.base_batch_size=16', 'param_scheduler=[]',
              'default_hooks.logger.interval=1'], cwd=toy_workspace)
    cfg = Config.fromfile(CLS)
    expected = cfg.optim_wrapper.optimizer.lr * 8 / 16
    scalars = next(work_dir.glob('*/vis_data/scalars.json'))
    lrs = [json.loads(line)['lr'] for line in
           scalars.read_text().splitlines() if '"lr"' in line]
    assert len(lrs) == 3  # 24 images, batch 8
    assert lrs == pytest.approx([expected] * 3, rel=1e-9)
    assert list(work_dir.glob('*/vis_data/events.out.tfevents.*'))


def test_auto_scale_lr_needs_a_base_batch_size(toy_workspace):
    # mmseg's schedules state no auto_scale_lr
    proc = run_tool(['train.py', SEG, '--auto-scale-lr'], cwd=toy_workspace,
                    check=False)
    assert proc.returncode != 0
    assert error_lines(proc) == [
        'error: --auto-scale-lr needs auto_scale_lr = '
        'dict(base_batch_size=N) in the config (the total batch size its lr '
        'is meant for)']


def untrained_checkpoint(config, folder):
    """A checkpoint of ``config``'s model as built: what is drawn does not
    matter, only that every test image is drawn."""
    model, _ = build_model(Config.fromfile(config), inference=False)
    path = folder / f'{config.stem}.pth'
    torch.save({'state_dict': model.state_dict()}, path)
    return path


@pytest.mark.parametrize('config', [
    CLS, pytest.param(DET, marks=pytest.mark.slow),
    pytest.param(SEG, marks=pytest.mark.slow)], ids=lambda c: c.stem)
def test_show_dir_saves_every_test_image(config, toy_workspace, tmp_path):
    show_dir = tmp_path / 'shown'
    proc = run_tool(['test.py', config,
                     untrained_checkpoint(config, tmp_path), '--work-dir',
                     tmp_path / 'work', '--show-dir', show_dir],
                    cwd=toy_workspace)
    printed_metrics(proc)
    drawn = [p for p in Path(show_dir).rglob('*')
             if p.suffix in ('.png', '.jpg')]
    assert len(drawn) == TEST_IMAGES[config]


def test_show_dir_needs_a_visualization_hook(toy_workspace, tmp_path):
    proc = run_tool(['test.py', DET, tmp_path / 'none.pth', '--show-dir',
                     tmp_path, '--cfg-options',
                     'default_hooks.visualization=None'],
                    cwd=toy_workspace, check=False)
    assert proc.returncode != 0
    assert error_lines(proc) == [
        "error: --show/--show-dir need default_hooks.visualization = "
        "dict(type='DetVisualizationHook') in the config"]
