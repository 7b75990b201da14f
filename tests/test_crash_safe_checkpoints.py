"""Crash-safe checkpoints and ``--resume`` with the real runner on the toy
data: a run SIGKILLed while a checkpoint is being written (with
``max_keep_ckpts=1``) resumes having lost at most one interval, and
``--resume`` with nothing (usable) to resume stops with one error line."""
import importlib.util
import signal
from pathlib import Path

import pytest
import torch

from mmacmix.engine.runner import DatasetNotFoundError, check_datasets

from helpers import REPO_ROOT, TOOLS, logged_train_iters, run_tool

CLS = REPO_ROOT / 'configs/toy/swin_acmix_toy_in1k.py'
ITERS_PER_EPOCH = 3  # 24 toy ImageNet train images, batch 8


def _plain_load(path):
    return torch.load(path, map_location='cpu', weights_only=True)


def _kill_config(folder: Path) -> Path:
    """The toy classifier for two epochs, a checkpoint every epoch and only
    the last one kept, with the test module that can kill a save
    (``tests/kill_during_save.py``, inert unless asked)."""
    config = folder / 'kill_cfg.py'
    config.write_text(
        f"_base_ = '{CLS}'\n"
        "custom_imports = dict(imports=['mmacmix', 'kill_during_save'], "
        'allow_failed_imports=False)\n'
        'default_hooks = dict(checkpoint=dict(interval=1, '
        'max_keep_ckpts=1))\n'
        'train_cfg = dict(max_epochs=2, val_interval=2)\n')
    return config


def test_kill_during_save_loses_at_most_one_interval(toy_workspace,
                                                     tmp_path):
    config = _kill_config(tmp_path)
    work_dir = tmp_path / 'work_dir'
    tests_on_path = dict(PYTHONPATH=f'{REPO_ROOT}:{REPO_ROOT / "tests"}')
    # nothing to resume yet: --resume-or-start starts afresh; the run is
    # killed 1 MiB into writing epoch_2.pth
    killed = run_tool(['train.py', config, '--work-dir', work_dir,
                       '--resume-or-start'], cwd=toy_workspace, check=False,
                      MMACMIX_KILL_DURING_SAVE='epoch_2.pth',
                      **tests_on_path)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    # epoch 1 is complete, still there and named by last_checkpoint (with
    # mmengine alone it is deleted before epoch 2 is written); the partial
    # file is a temporary one, which no checkpoint name points at
    last = Path((work_dir / 'last_checkpoint').read_text())
    assert last == work_dir / 'epoch_1.pth'
    assert _plain_load(last)['meta']['epoch'] == 1
    assert not (work_dir / 'epoch_2.pth').exists()
    (partial, ) = work_dir.glob('.epoch_2.pth.*.tmp')
    assert partial.stat().st_size == 2**20

    run_tool(['train.py', config, '--work-dir', work_dir, '--resume'],
             cwd=toy_workspace, **tests_on_path)
    # one interval lost at most: the second run trained epoch 2 only
    first_run, resumed = logged_train_iters(work_dir)
    assert min(resumed) > ITERS_PER_EPOCH
    final = _plain_load(work_dir / 'epoch_2.pth')
    assert (final['meta']['epoch'], final['meta']['iter']) == (
        2, 2 * ITERS_PER_EPOCH)
    # max_keep_ckpts=1 removed epoch 1 after saving epoch 2, and the
    # killed run's temporary file is gone
    assert sorted(p.name for p in work_dir.glob('*.pth')) == ['epoch_2.pth']
    assert not list(work_dir.glob('.*.tmp'))
    assert Path((work_dir / 'last_checkpoint').read_text()) == (
        work_dir / 'epoch_2.pth')


def _train_main():
    spec = importlib.util.spec_from_file_location('train', TOOLS / 'train.py')
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool.main


def _train_error(argv) -> str:
    """tools/train.py's ``main`` in this process, which must stop before
    building a runner: the message it exits with."""
    with pytest.raises(SystemExit) as stop:
        _train_main()([str(a) for a in argv])
    assert isinstance(stop.value.code, str), stop.value.code
    assert '\n' not in stop.value.code
    return stop.value.code


def test_resume_with_nothing_to_resume(toy_workspace, tmp_path):
    """A process: one error line, exit status 1, nothing trained."""
    work_dir = tmp_path / 'empty'
    proc = run_tool(['train.py', CLS, '--work-dir', work_dir, '--resume'],
                    cwd=toy_workspace, check=False)
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if 'error' in line]
    assert errors == [
        f'error: --resume: nothing to resume in {work_dir} (no '
        f'last_checkpoint file); there is no checkpoint (*.pth) in '
        f'{work_dir} either. To start a new run, drop --resume, or use '
        '--resume-or-start to resume when there is a checkpoint and start '
        'afresh otherwise']
    assert not work_dir.exists() or not list(work_dir.rglob('*.pth'))


def test_last_checkpoint_naming_a_missing_file(toy_workspace, tmp_path,
                                               monkeypatch):
    monkeypatch.chdir(toy_workspace)
    work_dir = tmp_path / 'work_dir'
    work_dir.mkdir()
    (work_dir / 'last_checkpoint').write_text(str(work_dir / 'epoch_3.pth'))
    torch.save({}, work_dir / 'epoch_2.pth')
    for flag in ('--resume', '--resume-or-start'):
        assert _train_error([CLS, '--work-dir', work_dir, flag]) == (
            f'error: {work_dir}/last_checkpoint names {work_dir}/epoch_3.pth, '
            'which does not exist (moved or deleted?); checkpoints in '
            f'{work_dir}, newest first: epoch_2.pth; resume from one with '
            f'--resume {work_dir}/epoch_2.pth')


def test_resume_from_a_plain_state_dict(toy_workspace, tmp_path,
                                        monkeypatch):
    monkeypatch.chdir(toy_workspace)
    plain = tmp_path / 'weights.pth'
    torch.save({'backbone.w': torch.ones(1)}, plain)
    assert _train_error([CLS, '--work-dir', tmp_path, '--resume', plain]) == (
        f'error: --resume {plain}: not a checkpoint written by the training '
        "runner (it needs 'meta' with the epoch and iteration, 'state_dict' "
        "and the optimizer's state; this file holds the keys "
        "['backbone.w']). To start a new run from its weights, drop "
        f'--resume and pass --cfg-options load_from={plain}')
    missing = tmp_path / 'missing.pth'
    assert _train_error([CLS, '--resume', missing]) == (
        f'error: --resume {missing}: no such file')


def test_resume_flags_exclude_each_other(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        _train_main()([str(CLS), '--resume', '--resume-or-start'])
    assert stop.value.code == 2
    assert 'not allowed with argument' in capsys.readouterr().err


@pytest.mark.parametrize('config', sorted(
    (REPO_ROOT / 'configs/toy').glob('*.py')), ids=lambda p: p.stem)
def test_missing_dataset_names_data_root(config, toy_workspace, tmp_path,
                                         monkeypatch):
    """Every toy config finds its data in the toy workspace; elsewhere the
    error names data_root and how to make the toy data."""
    from mmacmix.engine.runner import load_config
    cfg = load_config(str(config))
    monkeypatch.chdir(toy_workspace)
    loaders = ['train_dataloader', 'val_dataloader', 'test_dataloader']
    check_datasets(cfg, loaders)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DatasetNotFoundError) as error:
        check_datasets(cfg, loaders)
    root = cfg.train_dataloader.dataset.data_root
    assert str(error.value).startswith(
        f'the dataset of train_dataloader is missing: data_root {root!r} '
        f'does not exist, relative to {tmp_path}. For the toy datasets of '
        'configs/toy run `python tools/misc/make_toy_data.py --out '
        'data/toy` here')
    # the data root there, its annotation file missing
    Path(root).mkdir(parents=True)
    with pytest.raises(DatasetNotFoundError, match=r' does not exist \(under '
                       rf'data_root {root!r}\)'):
        check_datasets(cfg, loaders)


def test_missing_dataset_stops_train_and_test(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    message = _train_error([CLS, '--work-dir', tmp_path / 'w'])
    assert message.startswith(
        "error: the dataset of train_dataloader is missing: data_root "
        "'data/toy/imagenet' does not exist")
    spec = importlib.util.spec_from_file_location('test_tool',
                                                  TOOLS / 'test.py')
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    monkeypatch.setattr('sys.argv', ['test.py', str(CLS), 'x.pth'])
    with pytest.raises(SystemExit) as stop:
        tool.main()
    assert stop.value.code.startswith(
        "error: the dataset of test_dataloader is missing: data_root "
        "'data/toy/imagenet' does not exist")
