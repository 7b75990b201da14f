"""The tools on bad checkpoints, run as a user runs them on the toy data:
hostile files served over HTTP (tools/test.py CONFIG URL, load_from=URL, a
backbone's Pretrained init_cfg=URL) never run and end in one ``error:``
line; a checkpoint of another model is refused by tools/test.py, load_from
and the image demo unless partial loading is asked for; the commands of
docs/checkpoint_loading.md."""
import re
import shlex

import pytest
import torch
from mmengine.config import Config
from test_checkpoint_safety import save_hostile
from test_paper_tools import load_tool

from mmacmix.analysis.complexity import build_model
from mmacmix.engine.checkpoint import CheckpointError

from helpers import REPO_ROOT, printed_metrics, run_tool, serve_folder

CLS = REPO_ROOT / 'configs/toy/swin_acmix_toy_in1k.py'
DET = REPO_ROOT / 'configs/toy/retinanet_resnet_acmix_toy_coco.py'
DOC = REPO_ROOT / 'docs/checkpoint_loading.md'
ONE_ITER = ['train_dataloader.batch_size=24', 'train_cfg.max_epochs=1',
            'train_cfg.val_interval=2']


def assert_one_error(proc, pattern):
    """A non-zero exit with exactly one ``error:`` line on stderr, matching
    ``pattern``, and no traceback."""
    assert proc.returncode != 0, proc.stdout[-2000:]
    assert 'Traceback' not in proc.stderr, proc.stderr[-4000:]
    errors = [line for line in proc.stderr.splitlines()
              if line.startswith('error: ')]
    assert len(errors) == 1, proc.stderr[-4000:]
    assert re.search(pattern, errors[0]), errors[0]


@pytest.fixture(scope='module')
def cls_files(tmp_path_factory):
    """State dicts for the toy classifier: its own, one of another model
    (no key matches), one with every shape wrong, its backbone alone."""
    folder = tmp_path_factory.mktemp('cls_files')
    model, _ = build_model(Config.fromfile(CLS), inference=False)
    state = model.state_dict()
    variants = {
        'own': state,
        'other_model': {'encoder.' + k: v for k, v in state.items()},
        'wrong_shapes': {k: v.new_zeros(*v.shape, 2)
                         for k, v in state.items()},
        'backbone_only': {k: v for k, v in state.items()
                          if k.startswith('backbone.')},
    }
    for name, state_dict in variants.items():
        torch.save({'state_dict': state_dict, 'meta': {}},
                   folder / f'{name}.pth')
    return folder


def run_on_hostile_url(runs, toy_workspace, tmp_path):
    """Each of ``runs`` (name: tool arguments with ``{url}`` for the
    hostile file's URL), a local server serving the file, each with an
    empty torch hub cache: one error line, the payload never runs."""
    marker = tmp_path / 'pwned'
    served = tmp_path / 'served'
    served.mkdir()
    save_hostile(served / 'evil.pth', marker)
    with serve_folder(served, max_requests=2 * len(runs)) as url:
        evil = f'{url}/evil.pth'
        for name, args in runs.items():
            args = [str(a).format(url=evil) for a in args]
            proc = run_tool(args + ['--work-dir', tmp_path / name],
                            cwd=toy_workspace, check=False,
                            TORCH_HOME=str(tmp_path / name / 'torch'),
                            NO_PROXY='127.0.0.1')
            assert_one_error(
                proc, rf'^error: refused to load checkpoint {evil} \(read '
                r'from .*\): unpickling it would import posix\.system.*'
                'Nothing in the file was executed')
            assert not marker.exists(), name


def test_hostile_url_never_runs_in_test_tool(toy_workspace, tmp_path):
    run_on_hostile_url({'test': ['test.py', CLS, '{url}']}, toy_workspace,
                       tmp_path)


@pytest.mark.slow
def test_hostile_url_never_runs_in_training(toy_workspace, tmp_path):
    """load_from=URL and a backbone Pretrained init_cfg from the URL."""
    run_on_hostile_url({
        'load_from': ['train.py', CLS, '--cfg-options', 'load_from={url}'],
        'init_cfg': ['train.py', CLS, '--cfg-options',
                     'model.backbone.init_cfg.type=Pretrained',
                     'model.backbone.init_cfg.checkpoint={url}'],
    }, toy_workspace, tmp_path)


def test_test_tool_refuses_another_model(cls_files, toy_workspace,
                                         tmp_path):
    proc = run_tool(['test.py', CLS, cls_files / 'other_model.pth',
                     '--work-dir', tmp_path], cwd=toy_workspace,
                    check=False)
    assert_one_error(
        proc, r'does not fit ImageClassifier: 0 of its 107 tensors load '
        r'\(every one of them must load\), 107 missing, 0 shape-mismatched, '
        '107 unexpected; missing: backbone.patch_embed.projection.weight, '
        r'.*unexpected: encoder\.backbone.*--allow-partial')


@pytest.mark.slow
def test_train_refuses_load_from_another_model(cls_files, toy_workspace,
                                               tmp_path):
    proc = run_tool(['train.py', CLS, '--work-dir', tmp_path,
                     '--cfg-options',
                     f'load_from={cls_files / "wrong_shapes.pth"}'],
                    cwd=toy_workspace, check=False)
    assert_one_error(proc, r'0 of its 107 tensors load \(most of them must '
                     r'load\), 0 missing, 107 shape-mismatched')
    assert not list(tmp_path.glob('*.pth'))
    # the config key keeps mmengine's warnings-only behaviour
    run_tool(['train.py', CLS, '--work-dir', tmp_path, '--cfg-options',
              f'load_from={cls_files / "wrong_shapes.pth"}',
              'allow_partial_load=True', *ONE_ITER], cwd=toy_workspace)
    assert (tmp_path / 'epoch_1.pth').is_file()


def test_demo_bad_inputs(cls_files, toy_root, tmp_path):
    """Every bad input ends in an error the tool prints as one line."""
    image = sorted((toy_root / 'coco' / 'val2017').glob('*.jpg'))[0]
    model, _ = build_model(Config.fromfile(DET))
    torch.save({'state_dict': model.state_dict()}, tmp_path / 'det.pth')
    save_hostile(tmp_path / 'evil.pth', tmp_path / 'pwned')
    (tmp_path / 'text.pth').write_text('not a checkpoint\n')
    (tmp_path / 'bad_config.py').write_text('model = dict(type=\n')
    (tmp_path / 'no_model.py').write_text('x = 1\n')
    (tmp_path / 'unknown.py').write_text(
        "default_scope = 'mmdet'\nmodel = dict(type='NoSuchDetector')\n")
    det, out = str(tmp_path / 'det.pth'), str(tmp_path / 'out.png')
    cases = [
        ([tmp_path / 'no.jpg', DET, det], 'image .* can not be found'),
        ([tmp_path / 'text.pth', DET, det], 'is not an image file'),
        ([image, tmp_path / 'no.py', det], 'config .* can not be found'),
        ([image, tmp_path / 'bad_config.py', det], 'cannot read config'),
        ([image, tmp_path / 'no_model.py', det], 'defines no model'),
        ([image, tmp_path / 'unknown.py', det], 'does not build a model'),
        ([image, CLS, det], "'mmpretrain' configs are not supported"),
        ([image, DET, tmp_path / 'no.pth'], 'checkpoint .* can not be found'),
        ([image, DET, tmp_path / 'text.pth'], 'is truncated, corrupt'),
        ([image, DET, tmp_path / 'evil.pth'], 'refused to load'),
        ([image, DET, cls_files / 'own.pth'],
         r'does not fit RetinaNet: 0 of its \d+ tensors load'),
        ([image, DET, det, '--device', 'gpu'], "--device 'gpu' is no device"),
        ([image, DET, det, '--device', 'cuda:7'], 'has 0 CUDA devices'),
    ]
    tool = load_tool('demo/image_demo.py')
    for args, message in cases:
        with pytest.raises((FileNotFoundError, ValueError, CheckpointError),
                           match=message):
            tool.main([str(a) for a in args] + ['--out-file', out])
    assert not (tmp_path / 'pwned').exists()


@pytest.mark.slow
def test_demo_command_error_line(toy_root, tmp_path):
    image = sorted((toy_root / 'coco' / 'val2017').glob('*.jpg'))[0]
    save_hostile(tmp_path / 'evil.pth', tmp_path / 'pwned')
    proc = run_tool(['demo/image_demo.py', image, DET, tmp_path / 'evil.pth',
                     '--out-file', tmp_path / 'out.png'], cwd=tmp_path,
                    check=False)
    assert_one_error(proc, '^error: refused to load checkpoint')
    assert not (tmp_path / 'pwned').exists()


def test_demo_allow_partial(toy_root, tmp_path, capsys):
    """A detector's checkpoint without its head: refused, drawn with
    --allow-partial."""
    image = sorted((toy_root / 'coco' / 'val2017').glob('*.jpg'))[0]
    model, _ = build_model(Config.fromfile(DET))
    torch.save({'state_dict': {k: v for k, v in model.state_dict().items()
                               if not k.startswith('bbox_head.')}},
               tmp_path / 'no_head.pth')
    args = [str(image), str(DET), str(tmp_path / 'no_head.pth'),
            '--out-file', str(tmp_path / 'out.png')]
    tool = load_tool('demo/image_demo.py')
    with pytest.raises(CheckpointError, match=r'missing: bbox_head\.'):
        tool.main(args)
    tool.main(args + ['--allow-partial'])
    assert (tmp_path / 'out.png').is_file()


def doc_commands():
    """The commands of the doc's bash blocks, in order."""
    blocks = re.findall(r'```bash\n(.*?)```', DOC.read_text(), re.S)
    text = '\n'.join(blocks).replace('\\\n', ' ')
    return [shlex.split(line) for line in text.splitlines()
            if line.strip() and not line.lstrip().startswith('#')]


@pytest.mark.slow
def test_doc_commands(cls_files, toy_workspace, tmp_path):
    """The doc's commands on the toy classifier, run as written from a
    folder holding the toy data, the config and the checkpoints: the
    refusals fail with their message, everything else succeeds."""
    workspace = toy_workspace
    for name in ('own', 'other_model', 'wrong_shapes', 'backbone_only'):
        (workspace / f'{name}.pth').write_bytes(
            (cls_files / f'{name}.pth').read_bytes())
    commands = doc_commands()
    assert len(commands) == 5
    expected_errors = {
        1: 'every one of them must load',
        2: 'every one of them must load',
    }
    for i, command in enumerate(commands):
        assert command[:2] == ['python', command[1]]
        tool = command[1][len('tools/'):]
        args = [REPO_ROOT / a if a.startswith('configs/') else a
                for a in command[2:]]
        proc = run_tool([tool, *args, '--work-dir', tmp_path / str(i)],
                        cwd=workspace, check=i not in expected_errors)
        if i in expected_errors:
            assert_one_error(proc, expected_errors[i])
        elif tool == 'test.py':
            assert 'accuracy/top1' in printed_metrics(proc)


def test_plot_rates_reads_urls_safely(tmp_path, monkeypatch):
    """plot_rates loads no model; it reads any source mmengine reads, and
    refuses a hostile one."""
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch'))
    monkeypatch.setenv('NO_PROXY', '127.0.0.1')
    served = tmp_path / 'served'
    served.mkdir()
    torch.save({'state_dict': {'backbone.layer1.0.rate1': torch.tensor(0.5),
                               'backbone.layer1.0.rate2': torch.tensor(2.)}},
               served / 'rates.pth')
    save_hostile(served / 'evil.pth', tmp_path / 'pwned')
    tool = load_tool('analysis_tools/plot_rates.py')
    with serve_folder(served, max_requests=2) as url:
        assert tool.read_rates(f'{url}/rates.pth') == [
            ('backbone.layer1.0', 1, 0.5, 2.0)]
        with pytest.raises(CheckpointError, match='refused to load'):
            tool.read_rates(f'{url}/evil.pth')
    assert not (tmp_path / 'pwned').exists()
