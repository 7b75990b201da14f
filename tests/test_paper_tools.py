"""The reproduction tools: tools/analysis_tools/paper_table.py,
tools/analysis_tools/plot_rates.py, tools/analysis_tools/plot_logs.py and
tools/demo/image_demo.py on toy configs, hand-written logs and checkpoints
with known values; the numbers they print are checked against those values,
and bad inputs give clear errors."""
import json
import re

import cv2
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import MODELS

import mmacmix  # noqa: F401  (before mmdet/mmpretrain import torchvision)
from mmacmix.analysis.complexity import build_model
from mmacmix.analysis.logs import NoLogsError

from helpers import REPO_ROOT, load_tool, run_tool

TOY_DET = REPO_ROOT / 'configs/toy/mask_rcnn_swin_acmix_toy_coco.py'
TOY_SEG = REPO_ROOT / 'configs/toy/fpn_swin_acmix_toy_ade20k.py'
TOY_CLS = REPO_ROOT / 'configs/toy/swin_acmix_toy_in1k.py'
TOY_RESNET_DET = REPO_ROOT / 'configs/toy/retinanet_resnet_acmix_toy_coco.py'


def write_lines(path, records):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(''.join(json.dumps(r) + '\n' for r in records))


# ---------------------------------------------------------------- paper_table


def _cells(table, first):
    """The cells of the Markdown row of ``table`` starting with ``first``."""
    row = next(line for line in table.splitlines()
               if line.startswith(f'| {first} |'))
    return [c.strip() for c in row.strip('|').split('|')]


def test_paper_table_counts_and_newest_logged_metrics(tmp_path, capsys):
    """A toy Mask R-CNN: the parameters printed are the built model's, at
    the exact input size (not padded to 32); box/mask AP are the newest
    evaluation among the work dirs of that config (a dir named after it,
    and a renamed one holding a copy of the config), in percent; each
    number column is paper baseline, paper ACmix, ours, ours - ACmix, with
    'lost' and '—' for the paper's lost and absent cells. A second run
    reads the counts from the cache."""
    name = TOY_DET.stem
    work_dirs = tmp_path / 'work_dirs'
    # an older training run in work_dirs/<config name>
    write_lines(work_dirs / name / '20250101_120000/vis_data/scalars.json', [
        {'loss': 2.0, 'epoch': 1, 'iter': 5, 'step': 5},
        {'coco/bbox_mAP': 0.1, 'coco/segm_mAP': 0.2, 'step': 1},
        {'coco/bbox_mAP': 0.345, 'coco/segm_mAP': 0.4567, 'step': 2},
    ])
    # a newer test run in a renamed work dir (the runner copies the config)
    renamed = work_dirs / 'renamed'
    write_lines(renamed / '20250102_090000/20250102_090000.json',
                [{'coco/bbox_mAP': 0.5, 'coco/bbox_mAP_50': 0.7,
                  'coco/segm_mAP': 0.25}])
    (renamed / f'{name}.py').write_text('# config copy\n')
    # a newer run of another config's work dir is not read
    write_lines(work_dirs / 'unrelated/20250103_000000/vis_data/scalars.json',
                [{'coco/bbox_mAP': 0.9, 'step': 1}])
    paper = json.loads((REPO_ROOT / 'configs/paper_results.json').read_text())
    paper['models'] = {name: {
        'task': 'COCO object detection', 'metrics': ['bbox_mAP'],
        'acmix': {'model': 'Toy-ACmix', 'table': 'Table 4', 'flops_g': 12.5,
                  'bbox_mAP': 41.2, 'lost': ['bbox_AP50'],
                  'sources': ['paper-table-4']},
        'baseline': {'model': 'Toy', 'table': 'Table 4', 'params_m': 2.5,
                     'bbox_mAP': 40.0, 'fps': 7.5,
                     'sources': ['paper-table-4']}}}
    paper_file = tmp_path / 'paper.json'
    paper_file.write_text(json.dumps(paper))
    args = ['--configs', str(TOY_DET), '--shape', '60', '68', '--work-dirs',
            str(work_dirs), '--paper', str(paper_file), '--cache',
            str(tmp_path / 'cache.json')]
    tool = load_tool('analysis_tools/paper_table.py')

    (row, ) = tool.main(args + ['--json', str(tmp_path / 'rows.json'),
                                '--csv', str(tmp_path / 'rows.csv')])
    table = capsys.readouterr().out
    model, _ = build_model(Config.fromfile(TOY_DET))
    params = sum(p.numel() for p in model.parameters())
    assert round(row['params_m'] * 1e6) == params
    assert row['input'] == '60x68' and row['flops_g'] > 0  # not padded
    assert (row['bbox_mAP'], row['bbox_AP50'], row['segm_mAP']) == (
        50.0, 70.0, 25.0)
    assert row['log'] == f'{renamed} (20250102_090000)'
    assert (row['paper_acmix_bbox_mAP'], row['paper_acmix_flops_g'],
            row['paper_acmix_bbox_AP50']) == (41.2, 12.5, 'lost')
    assert row['delta_bbox_mAP'] == pytest.approx(8.8)
    assert row['delta_flops_g'] == pytest.approx(row['flops_g'] - 12.5,
                                                 abs=1e-4)
    assert (row['paper_baseline_params_m'], row['paper_baseline_fps'],
            row['paper_acmix_segm_mAP']) == (2.5, 7.5, None)
    assert json.loads((tmp_path / 'rows.json').read_text()) == rows_json(
        tool, [row])
    assert (tmp_path / 'rows.csv').read_text().count('\n') == 2
    cells = _cells(table, f'`{name}`')
    assert cells[:4] == [f'`{name}`', 'Toy-ACmix / Toy', 'Table 4', '60x68']
    assert cells[4:8] == ['2.5', '—', f'{params / 1e6:.2f}', '']
    assert cells[8:12] == ['—', '12.5', f'{row["flops_g"]:.2f}',
                           f'{row["flops_g"] - 12.5:+.2f}']
    assert cells[12:16] == ['40.0', '41.2', '50.0', '+8.8']  # box AP
    assert cells[16:20] == ['—', 'lost', '70.0', '']  # box AP50
    assert cells[-6:] == ['—', '—', '25.0', '', '7.5', '—']  # mask AP, FPS

    # the counts now come from the cache, without counting
    (cached, ) = tool.main(args + ['--no-measure'])
    assert cached['params_m'] == row['params_m']
    assert cached['flops_g'] == row['flops_g']
    capsys.readouterr()
    # no cache, no counting: said so
    tool.main(args[:-2] + ['--no-cache', '--no-measure', '--work-dirs',
                           str(tmp_path / 'none')])
    cells = _cells(capsys.readouterr().out, f'`{name}`')
    assert cells.count('not measured') == 2 and cells.count('not run') == 4


def rows_json(tool, rows):
    return [json.loads(json.dumps(tool.model_zoo.flat(r))) for r in rows]


def test_paper_table_lists_every_config_and_paper_row(tmp_path, capsys):
    """Without --configs: every configs/*.py (whatever configs exist: none
    is listed in the tool), no toy config, and every entry of the paper
    data file, each row citing its table among the sources."""
    tool = load_tool('analysis_tools/paper_table.py')
    rows = tool.main(['--no-measure', '--no-cache', '--work-dirs',
                      str(tmp_path)])
    table = capsys.readouterr().out
    paper = json.loads((REPO_ROOT / 'configs/paper_results.json').read_text())
    configs = {p.stem for p in (REPO_ROOT / 'configs').glob('*.py')}
    names = {r['config'] for r in rows}
    assert names == configs | set(paper['models'])
    assert set(paper['models']) <= configs  # keyed by real configs
    assert not any('toy' in name for name in names)
    for name, entry in paper['models'].items():
        assert set(entry['metrics']) <= set(tool.model_zoo.METRICS)
        for row in (entry['acmix'], entry['baseline'],
                    *entry.get('others', [])):
            key = 'paper-' + row['table'].lower().replace(' ', '-')
            assert row['sources'] == [key], name
            assert key in paper['sources']
    for heading in ('ImageNet-1K classification',
                    'ADE20K semantic segmentation', 'COCO object detection',
                    'ImageNet-1K classification, ablation (Table 6'):
        assert f'#### {heading}' in table


def test_paper_table_unknown_config_errors():
    tool = load_tool('analysis_tools/paper_table.py')
    with pytest.raises(ValueError, match="no config matches 'nonexistent'"):
        tool.main(['--configs', 'nonexistent', '--no-measure'])


# ---------------------------------------------------------------- plot_rates


def with_known_rates(backbone_cfg, offset):
    """State dict of a freshly built backbone with rate1 = offset + 0.1 i,
    rate2 = 1 - 0.05 i in layer i; the rates in depth order."""
    weights = MODELS.build(backbone_cfg).state_dict()
    keys = [k for k in weights if k.endswith('.rate1')]
    rates = []
    for i, key in enumerate(keys):
        rate1, rate2 = offset + 0.1 * i, 1 - 0.05 * i
        weights[key] = torch.tensor([rate1])
        weights[key[:-1] + '2'] = torch.tensor([rate2])
        rates.append((rate1, rate2))
    return weights, rates


def printed_rates(text):
    """{checkpoint label: [(stage, rate1, rate2, ratio)]}"""
    tables, label = {}, None
    for line in text.splitlines():
        head = re.match(r'(\S+): .*ACmix layers', line)
        if head:
            label = head.group(1)
            tables[label] = []
        elif re.match(r'\s+\d+\s+\d+\s', line):
            _, stage, rate1, rate2, ratio, _ = line.split()
            tables[label].append((int(stage), float(rate1), float(rate2),
                                  float(ratio)))
    return tables


def test_plot_rates_prints_the_checkpoint_rates(tmp_path, capsys):
    """A runner checkpoint of a toy Swin detector (backbone.stages.N...)
    and a plain state dict of a toy ResNet-ACmix (layerN...): every
    layer's rates, their ratio and its stage, in depth order; one PNG with
    both overlaid."""
    swin_cfg = Config.fromfile(TOY_DET).model.backbone
    swin, swin_rates = with_known_rates(swin_cfg, 0.2)
    torch.save({'meta': {}, 'state_dict': {
        f'backbone.{k}': v for k, v in swin.items()}}, tmp_path / 'swin.pth')
    resnet, resnet_rates = with_known_rates(
        Config.fromfile(TOY_RESNET_DET).model.backbone, 0.5)
    torch.save(resnet, tmp_path / 'resnet.pth')
    out = tmp_path / 'rates.png'

    tool = load_tool('analysis_tools/plot_rates.py')
    tool.main([str(tmp_path / 'swin.pth'), str(tmp_path / 'resnet.pth'),
               '--labels', 'swin', 'resnet', '--out', str(out)])
    tables = printed_rates(capsys.readouterr().out)

    depths = {'swin': swin_cfg.arch.depths, 'resnet': [1, 2, 4, 1]}
    for label, rates in (('swin', swin_rates), ('resnet', resnet_rates)):
        stages = [s + 1 for s, depth in enumerate(depths[label])
                  for _ in range(depth)]
        assert [row[0] for row in tables[label]] == stages
        for (_, rate1, rate2, ratio), (want1, want2) in zip(
                tables[label], rates, strict=True):
            assert rate1 == pytest.approx(want1, abs=5e-5)
            assert rate2 == pytest.approx(want2, abs=5e-5)
            assert ratio == pytest.approx(want1 / want2, abs=5e-5)
    image = cv2.imread(str(out))
    assert image is not None and image.shape[0] > 300 and image.std() > 0


def test_plot_rates_errors(tmp_path):
    """A missing file and a checkpoint without ACmix layers fail clearly,
    from the command line with exit status 1."""
    torch.save({'state_dict': {'backbone.conv.weight': torch.ones(2)}},
               tmp_path / 'plain.pth')
    tool = load_tool('analysis_tools/plot_rates.py')
    with pytest.raises(ValueError, match='no ACmix mixing rates'):
        tool.main([str(tmp_path / 'plain.pth')])
    proc = run_tool(['analysis_tools/plot_rates.py', 'missing.pth'], tmp_path,
                    check=False)
    assert proc.returncode == 1
    assert 'error: checkpoint missing.pth can not be found' in proc.stderr
    assert not (tmp_path / 'rates.png').exists()


# ----------------------------------------------------------------- plot_logs


def logged_work_dir(root):
    """Three runs: a training, its resumption (with validation mIoU per
    epoch) and a test run."""
    write_lines(root / '20250101_000000/vis_data/scalars.json', [
        {'lr': 0.1, 'loss': 2.0, 'epoch': 1, 'iter': 10, 'step': 10},
        {'lr': 0.1, 'loss': 1.5, 'epoch': 1, 'iter': 20, 'step': 20},
        {'mIoU': 10.0, 'aAcc': 50.0, 'step': 1},
    ])
    write_lines(root / '20250102_000000/vis_data/scalars.json', [
        {'lr': 0.1, 'loss': 1.25, 'epoch': 2, 'iter': 30, 'step': 30},
        {'lr': 0.1, 'loss': 0.75, 'epoch': 2, 'iter': 40, 'step': 40},
        {'mIoU': 20.5, 'aAcc': 60.0, 'step': 2},
    ])
    write_lines(root / '20250103_000000/20250103_000000.json',
                [{'mIoU': 21.0}])
    return root


def printed_summary(text):
    """{key: (x, points, first, last, min, max)}"""
    summary = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 7 and parts[2].isdigit():
            summary[parts[0]] = (parts[1], int(parts[2]),
                                 *map(float, parts[3:]))
    return summary


def test_plot_logs_reads_newest_or_all_runs(tmp_path, capsys):
    work_dir = logged_work_dir(tmp_path / 'work_dir')
    tool = load_tool('analysis_tools/plot_logs.py')

    found = tool.main([str(work_dir)])  # newest training run
    assert printed_summary(capsys.readouterr().out) == {
        'loss': ('iter', 2, 1.25, 0.75, 0.75, 1.25),
        'mIoU': ('epoch', 1, 20.5, 20.5, 20.5, 20.5)}
    assert found['loss'] == ('iter', [(30, 1.25), (40, 0.75)])
    assert (work_dir / 'curves.png').stat().st_size > 0

    out = tmp_path / 'all.png'
    found = tool.main([str(work_dir), '--all-runs', '--keys', 'loss', 'lr',
                       'mIoU', '--out', str(out)])
    assert printed_summary(capsys.readouterr().out) == {
        'loss': ('iter', 4, 2.0, 0.75, 0.75, 2.0),
        'lr': ('iter', 4, 0.1, 0.1, 0.1, 0.1),
        'mIoU': ('epoch', 2, 10.0, 20.5, 10.0, 20.5)}
    assert found['mIoU'] == ('epoch', [(1, 10.0), (2, 20.5)])
    image = cv2.imread(str(out))
    assert image is not None and image.std() > 0


def test_plot_logs_errors(tmp_path):
    tool = load_tool('analysis_tools/plot_logs.py')
    (tmp_path / 'empty').mkdir()
    with pytest.raises(NoLogsError, match='no mmengine logs'):
        tool.main([str(tmp_path / 'empty')])
    work_dir = logged_work_dir(tmp_path / 'work_dir')
    with pytest.raises(ValueError, match="'coco/bbox_mAP' was never logged"):
        tool.main([str(work_dir), '--keys', 'coco/bbox_mAP'])


# ---------------------------------------------------------------- image_demo


def save_fresh_checkpoint(config, path, meta):
    model, _ = build_model(Config.fromfile(config))
    torch.save({'state_dict': model.state_dict(), 'meta': meta}, path)


def test_image_demo_draws_detections(toy_root, tmp_path, capsys):
    """A freshly built toy Mask R-CNN (class names in the checkpoint): at
    score threshold 0 every detection is listed and drawn on an image of
    the input's size; above every score nothing is drawn, so the output is
    the input."""
    image = sorted((toy_root / 'coco' / 'val2017').glob('*.jpg'))[0]
    classes = ('sports ball', 'kite', 'tv')
    checkpoint = tmp_path / 'det.pth'
    save_fresh_checkpoint(TOY_DET, checkpoint,
                          {'dataset_meta': {'classes': classes}})
    tool = load_tool('demo/image_demo.py')
    original = cv2.imread(str(image))

    drawn = tmp_path / 'drawn.png'
    result = tool.main([str(image), str(TOY_DET), str(checkpoint),
                        '--out-file', str(drawn), '--score-thr', '0'])
    lines = capsys.readouterr().out.splitlines()
    num = len(result.pred_instances)
    assert num > 0 and f'{num} of {num} detections score >= 0.0' in lines
    listed = [line.split()[:-5] for line in lines if line.startswith('  ')]
    assert len(listed) == num
    assert {' '.join(words) for words in listed} <= set(classes)
    output = cv2.imread(str(drawn))
    assert output.shape == original.shape
    assert (output != original).any()

    blank = tmp_path / 'blank.png'
    tool.main([str(image), str(TOY_DET), str(checkpoint), '--out-file',
               str(blank), '--score-thr', '1.01'])
    assert f'0 of {num} detections score >= 1.01' in capsys.readouterr().out
    assert (cv2.imread(str(blank)) == original).all()


def test_image_demo_draws_segmentation(toy_root, tmp_path, capsys):
    """A freshly built toy Semantic-FPN: the overlay has the input's size,
    and the printed class shares cover the image."""
    image = sorted((toy_root / 'ade' / 'ADEChallengeData2016' / 'images' /
                    'validation').glob('*.jpg'))[0]
    checkpoint = tmp_path / 'seg.pth'
    save_fresh_checkpoint(TOY_SEG, checkpoint, {})
    out = tmp_path / 'seg.png'
    tool = load_tool('demo/image_demo.py')
    result = tool.main([str(image), str(TOY_SEG), str(checkpoint),
                        '--out-file', str(out)])
    shares = [float(line.split()[-1]) for line in
              capsys.readouterr().out.splitlines() if line.startswith('  ')]
    labels = result.pred_sem_seg.data
    assert len(shares) == len(labels.unique())
    assert sum(shares) == pytest.approx(1, abs=1e-4 * len(shares))
    original = cv2.imread(str(image))
    output = cv2.imread(str(out))
    assert output.shape == original.shape and (output != original).any()


def test_image_demo_errors(toy_root, tmp_path):
    image = sorted((toy_root / 'coco' / 'val2017').glob('*.jpg'))[0]
    tool = load_tool('demo/image_demo.py')
    with pytest.raises(FileNotFoundError, match='checkpoint .* can not be'):
        tool.main([str(image), str(TOY_DET), str(tmp_path / 'no.pth'),
                   '--out-file', str(tmp_path / 'x.png')])
    torch.save({'state_dict': {}}, tmp_path / 'cls.pth')
    with pytest.raises(ValueError, match="'mmpretrain' configs are not"):
        tool.main([str(image), str(TOY_CLS), str(tmp_path / 'cls.pth'),
                   '--out-file', str(tmp_path / 'x.png')])
