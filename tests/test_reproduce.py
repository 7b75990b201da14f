"""tools/reproduce.py (plan, missing prerequisites, launch, resume, collect)
on the paper's tables and the toy configs, and the missing-init-checkpoint
stop of tools/train.py."""
import contextlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from helpers import (REPO_ROOT, TOOLS, load_tool, run_tool, tool_env,
                     wait_for_file)

TOY = REPO_ROOT / 'configs/toy/retinanet_pvt_acmix_toy_coco.py'
RETINANET = ['retinanet_resnet_acmix_50_1x_coco',
             'retinanet_san_acmix_19_1x_coco', 'retinanet_pvt_acmix_t_1x_coco',
             'retinanet_pvt_acmix_t_3x_coco']
ITERS_PER_EPOCH = 2  # 16 toy COCO images, 2 processes x batch 4
# the commands of docs/reproduce.md, each run by a test below
RETINANET_PLAN = 'python tools/reproduce.py coco-retinanet --dry-run'
SLURM_CHAIN = ('python tools/reproduce.py imagenet coco-retinanet '
               '--launcher slurm --partition gpu --gpus 16')
MAKE_TOY = 'python tools/misc/make_toy_data.py --out data/toy'
TOY_ROW = ('python tools/reproduce.py configs/toy/retinanet_pvt_acmix_toy_coco'
           '.py --gpus 2 --work-dirs work_dirs/toy --cfg-options '
           'train_cfg.max_epochs=1 train_cfg.val_interval=1')
WRITE_DOCS = 'python tools/analysis_tools/paper_table.py --write-docs'


def plan(stdout):
    """The numbered commands of a printed plan."""
    return [line.split('. ', 1)[1] for line in stdout.splitlines()
            if line[:4].strip().rstrip('.').isdigit()]


def error_lines(stderr):
    return [line for line in stderr.splitlines() if line.startswith('error:')]


def test_dry_run_coco_retinanet_prints_the_four_rows(tmp_path, capsys,
                                                     monkeypatch):
    """The real commands for the four RetinaNet rows of Tables 3-4, in
    order; each missing prerequisite once, with how to get it; nothing
    written. Without --dry-run the tool stops there, with one error
    line."""
    monkeypatch.chdir(tmp_path)
    load_tool('reproduce.py').main(shlex.split(RETINANET_PLAN)[2:])
    out, err = capsys.readouterr()
    expected = []
    for name in RETINANET:
        config = REPO_ROOT / 'configs' / f'{name}.py'
        expected += [
            f'{TOOLS}/dist_train.sh {config} 8 --work-dir work_dirs/{name}',
            f'{TOOLS}/dist_test.sh {config} "$(cat work_dirs/{name}/'
            f'last_checkpoint)" 8 --work-dir work_dirs/{name}']
    assert plan(out) == expected
    missing = [line for line in err.splitlines()
               if line.startswith('missing: ')]
    assert len(missing) == 4
    assert missing[0].startswith('missing: dataset data/coco/ not found; '
                                 'get COCO 2017')
    assert missing[0].endswith(f'(needed by {", ".join(RETINANET)})')
    assert ('init checkpoint checkpoints/resnet_acmix_50_in1k.pth '
            '(model.backbone.init_cfg) not found; train '
            'configs/resnet_acmix_50_in1k.py') in missing[1]
    assert 'train configs/san_acmix_19_in1k.py' in missing[2]
    assert ('`python tools/model_converters/acmix_official.py pvt_tiny.pth '
            'checkpoints/pvt_acmix_t_in1k.pth`') in missing[3]
    assert missing[3].endswith('(needed by retinanet_pvt_acmix_t_1x_coco, '
                               'retinanet_pvt_acmix_t_3x_coco)')
    assert list(tmp_path.iterdir()) == []  # changed nothing

    # without --dry-run: the same report, one error line, nothing launched
    proc = run_tool(['reproduce.py', 'coco-retinanet'], cwd=tmp_path,
                    check=False)
    assert proc.returncode == 1
    assert error_lines(proc.stderr) == [
        'error: 4 missing prerequisite(s), listed above; nothing was run']
    assert list(tmp_path.iterdir()) == []


def test_dry_run_slurm_trains_the_init_checkpoints_of_earlier_rows(
        tmp_path, capsys, monkeypatch):
    """An ImageNet row of the same command provides the detectors' init
    checkpoint (copied once, after that row), so it is not missing; Slurm
    commands carry the GPU count."""
    monkeypatch.chdir(tmp_path)
    load_tool('reproduce.py').main(shlex.split(SLURM_CHAIN)[2:] +
                                   ['--dry-run'])
    out, err = capsys.readouterr()
    steps = plan(out)
    assert len(steps) == 2 * 14 + 3
    assert 'init checkpoint' not in err
    copy = ('mkdir -p checkpoints && cp "$(cat work_dirs/pvt_acmix_t_in1k/'
            'last_checkpoint)" checkpoints/pvt_acmix_t_in1k.pth')
    assert steps.count(copy) == 1
    config = REPO_ROOT / 'configs/retinanet_pvt_acmix_t_1x_coco.py'
    train = (f'GPUS=16 GPUS_PER_NODE=8 {TOOLS}/slurm_train.sh gpu '
             f'retinanet_pvt_acmix_t_1x_coco {config} '
             'work_dirs/retinanet_pvt_acmix_t_1x_coco')
    assert steps.index(copy) == steps.index(train) - 1
    assert steps.index(copy) > steps.index(
        f'GPUS=16 GPUS_PER_NODE=8 {TOOLS}/slurm_test.sh gpu pvt_acmix_t_in1k '
        f'{REPO_ROOT}/configs/pvt_acmix_t_in1k.py "$(cat work_dirs/'
        'pvt_acmix_t_in1k/last_checkpoint)" --work-dir '
        'work_dirs/pvt_acmix_t_in1k')
    assert list(tmp_path.iterdir()) == []


def test_bad_arguments(capsys):
    tool = load_tool('reproduce.py')
    with pytest.raises(ValueError, match=(
            r"unknown table or config 'coco-nothing' \(tables: imagenet, "
            r'ade20k, coco-retinanet, coco-swin, coco-speed; or a config\)')):
        tool.main(['coco-nothing', '--dry-run'])
    with pytest.raises(SystemExit):
        tool.main(['ade20k', '--launcher', 'slurm'])
    assert capsys.readouterr().err.splitlines()[-1].endswith(
        'error: --launcher slurm needs --partition')


def toy_args(work_dirs, epochs):
    """The toy row's arguments with ``epochs`` epochs."""
    return [str(TOY), '--gpus', '2', '--work-dirs', str(work_dirs),
            '--cfg-options', f'train_cfg.max_epochs={epochs}',
            f'train_cfg.val_interval={epochs}']


def test_reproduce_toy_row_end_to_end(toy_workspace, capsys, monkeypatch):
    """docs/reproduce.md's toy command: a toy config stands in for a table
    row, 2 CPU processes train and test it, the metrics land in the table;
    a second run skips it."""
    work_dirs = toy_workspace / 'work_dirs/toy'
    name = TOY.stem
    # as from the repository root: the config's path from there
    args = ['reproduce.py', str(TOY), *shlex.split(TOY_ROW)[3:]]
    proc = run_tool(args, cwd=toy_workspace, PORT='29631')
    work_dir = work_dirs / name
    ckpt = torch.load(work_dir / 'epoch_1.pth', weights_only=True)
    assert ckpt['meta']['iter'] == ITERS_PER_EPOCH  # two processes
    assert (work_dir / 'reproduce_test.done').is_file()
    (row, ) = json.loads((work_dirs / 'reproduce.json').read_text())
    (test_run, ) = [p for p in work_dir.glob('*/*.json')
                    if p.stem == p.parent.name]
    logged = json.loads(test_run.read_text())
    assert row['config'] == name and not row['in_paper']
    assert row['bbox_mAP'] == round(logged['coco/bbox_mAP'] * 100, 4)
    assert row['log'] == f'work_dirs/toy/{name} ({test_run.stem})'
    assert f'| `{name}` | no paper entry |' in (
        work_dirs / 'reproduce.md').read_text()
    assert (work_dirs / 'reproduce.csv').read_text().count('\n') == 2
    assert f'| `{name}` | no paper entry |' in proc.stdout

    monkeypatch.chdir(toy_workspace)
    load_tool('reproduce.py').main(args[1:])
    again = capsys.readouterr().out
    assert f'{name}: finished, skipped' in again
    assert '==>' not in again  # nothing launched
    assert json.loads((work_dirs / 'reproduce.json').read_text()) == [row]


def test_docs_commands_are_those_the_tests_run(tmp_path):
    """Every command of docs/reproduce.md is one of those the tests here
    run (the heavy ones with --dry-run) or, for --write-docs,
    tests/test_paper_results.py; the toy-data one runs here."""
    text = (REPO_ROOT / 'docs/reproduce.md').read_text()
    blocks = re.findall(r'```bash\n(.*?)```', text, re.S)
    commands = [line for block in blocks for line in block.splitlines()
                if line.strip()]
    assert commands == [RETINANET_PLAN, SLURM_CHAIN, MAKE_TOY, TOY_ROW,
                        WRITE_DOCS]
    run_tool(['misc/make_toy_data.py', *shlex.split(MAKE_TOY)[2:]],
             cwd=tmp_path)
    assert sorted(p.name for p in (tmp_path / 'data/toy').iterdir()) == [
        'ade', 'coco', 'imagenet']


def descendants(pid):
    """Every living process below ``pid``, read off /proc."""
    children = {}
    for stat in Path('/proc').glob('[0-9]*/stat'):
        with contextlib.suppress(OSError):
            # "pid (comm) state ppid ...": comm may hold spaces
            fields = stat.read_text().rsplit(')', 1)[1].split()
            children.setdefault(int(fields[1]), []).append(
                int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


@pytest.mark.slow
def test_killed_row_resumes(toy_workspace, tmp_path):
    """A row killed after its first checkpoint resumes from it (the train
    command gets --resume), then tests."""
    work_dirs = tmp_path / 'work_dirs'
    work_dir = work_dirs / TOY.stem
    # batch 1: 8 iterations an epoch, so the kill lands well inside the run
    # (a toy epoch at batch 4 can end before the poll below notices
    # epoch_1.pth, whose atomic save shows it only once complete)
    args = [*toy_args(work_dirs, 3), 'train_dataloader.batch_size=1']
    cmd = [sys.executable, str(TOOLS / 'reproduce.py'), *args]
    proc = subprocess.Popen(cmd, cwd=toy_workspace,
                            env=tool_env(PORT='29641'),
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for_file(work_dir / 'epoch_1.pth', proc)
    finally:
        # reproduce, torchrun and its workers (torchrun starts each worker
        # in a session of its own, so killing reproduce's leaves them)
        family = descendants(proc.pid)
        os.killpg(proc.pid, signal.SIGKILL)
        for pid in family:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.wait()
    while any(Path(f'/proc/{pid}').exists() for pid in family):
        time.sleep(0.2)
    assert not (work_dir / 'epoch_3.pth').exists()
    assert not (work_dir / 'reproduce_train.done').exists()

    result = run_tool(['reproduce.py', *args], cwd=toy_workspace,
                      PORT='29642')
    (train, test) = plan(result.stdout)
    assert train.endswith('--resume --cfg-options train_cfg.max_epochs=3 '
                          'train_cfg.val_interval=3 '
                          'train_dataloader.batch_size=1 (resumes)')
    last = torch.load(work_dir / 'epoch_3.pth', weights_only=True)
    assert last['meta']['iter'] == 3 * 8
    assert (work_dir / 'reproduce_test.done').is_file()
    (row, ) = json.loads((work_dirs / 'reproduce.json').read_text())
    assert row['bbox_mAP'] is not None


# ---------------------------------------------------- missing init checkpoint


def test_train_without_init_checkpoint_stops_before_the_data(tmp_path):
    """The card's command without checkpoints/pvt_acmix_s_in1k.pth: one
    error line naming the ways to produce it, before any runner, work dir or
    dataset."""
    proc = run_tool(['train.py', REPO_ROOT / 'configs/'
                     'retinanet_pvt_acmix_s_1x_coco.py'], cwd=tmp_path,
                    check=False)
    assert proc.returncode == 1
    assert 'Traceback' not in proc.stderr
    assert error_lines(proc.stderr) == [
        'error: init checkpoint checkpoints/pvt_acmix_s_in1k.pth '
        '(model.backbone.init_cfg) not found; produce it by (1) train '
        'configs/pvt_acmix_s_in1k.py and copy its last checkpoint: '
        '`tools/dist_train.sh configs/pvt_acmix_s_in1k.py 8 && cp "$(cat '
        'work_dirs/pvt_acmix_s_in1k/last_checkpoint)" '
        'checkpoints/pvt_acmix_s_in1k.pth`; or (2) convert whai362/PVT\'s '
        'PVT v1 small ImageNet weights (the convolution paths then start '
        'at their shift init, rates 1 and 0, not a trained PVT-ACmix): '
        '`python tools/model_converters/acmix_official.py pvt_small.pth '
        'checkpoints/pvt_acmix_s_in1k.pth`; or train from scratch on '
        'purpose with --cfg-options model.backbone.init_cfg=None']
    assert list(tmp_path.iterdir()) == []  # no work dir: nothing built


def test_init_cfg_none_still_trains_from_scratch(toy_workspace, tmp_path):
    """A toy config starting from a checkpoint that does not exist stops;
    with --cfg-options model.backbone.init_cfg=None it trains."""
    config = tmp_path / 'toy_from_missing.py'
    config.write_text(
        f"_base_ = ['{TOY}']\n"
        "model = dict(backbone=dict(init_cfg=dict(\n"
        "    _delete_=True, type='Pretrained', prefix='backbone.',\n"
        "    checkpoint='checkpoints/missing_in1k.pth')))\n")
    work_dir = tmp_path / 'work_dir'
    args = ['train.py', config, '--work-dir', work_dir, '--cfg-options',
            'train_cfg.max_epochs=1', 'train_cfg.val_interval=1']
    proc = run_tool(args, cwd=toy_workspace, check=False)
    assert proc.returncode == 1
    assert error_lines(proc.stderr) == [
        'error: init checkpoint checkpoints/missing_in1k.pth '
        '(model.backbone.init_cfg) not found; produce it by (1) train an '
        'ImageNet classifier with this backbone (there is no '
        'configs/missing_in1k.py) and copy its last checkpoint to '
        'checkpoints/missing_in1k.pth; or train from scratch on purpose with '
        '--cfg-options model.backbone.init_cfg=None']
    assert not work_dir.exists()
    run_tool(args + ['model.backbone.init_cfg=None'], cwd=toy_workspace)
    assert (work_dir / 'epoch_1.pth').is_file()
