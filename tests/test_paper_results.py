"""configs/paper_results.json against the paper's text, and docs/model_zoo.md
(with the README's summary) against configs/paper_results.json."""
import json
import re
from collections import Counter

import pytest

from mmacmix.analysis import model_zoo

from helpers import REPO_ROOT, load_tool

PAPER = json.loads((REPO_ROOT / 'configs/paper_results.json').read_text())
# the header row of each table in the text; Tables 3 and 4 share theirs
HEADERS = {
    'Table 1': ['| Method | Params | Flops | Top-1 |'],
    'Table 2': ['| Method | Backbone | Schd | Params | Flops | val mIoU |'],
    'Table 3': ['| Method | Backbone | Schd | Flops |', 0],
    'Table 4': ['| Method | Backbone | Schd | Flops |', 1],
    'Table 5': ['| Method | Backbone | mAP | FPS |'],
    'Table 6': ['| Method | Params | Flops | top-1 |', 0],
    'Table 7': ['| Shift Module | Flops | Top-1 | FPS |'],
}
# a number cell: 13.7M, 2.4G, 76.1 (+2.5), 67.7 (x1.3); not 1x or 40k
NUMBER = re.compile(r'^(\d+(?:\.\d+)?)[MG]?(?: \((?:\+|x)[\d.]+\))?$')


def paper_text(reference_dir):
    (path, ) = (reference_dir.parent / 'paper').glob('004_*.txt')
    return path.read_text()


def table_numbers(text, table):
    """Every number cell of ``table`` in the text (its rows follow its
    header up to the next header or the first line that is not a table
    row)."""
    header, *nth = HEADERS[table]
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith(header)]
    start = starts[nth[0] if nth else 0]
    numbers = []
    for line in lines[start + 1:]:
        if not line.startswith('|') or line.startswith(
                ('| Method |', '| Shift Module |')):  # the next table
            break
        for cell in line.strip('|').split('|'):
            match = NUMBER.match(cell.strip())
            # ablation settings ('1') are not numbers of a result
            if match and not (table == 'Table 6' and cell.strip() == '1'):
                numbers.append(float(match.group(1)))
    return Counter(numbers)


def json_rows():
    for entry in PAPER['models'].values():
        yield from (entry['acmix'], entry['baseline'],
                    *entry.get('others', []))
    for entry in PAPER['paper_only'].values():
        yield from entry['rows']


FIELDS = ('params_m', 'flops_g', 'top1', 'mIoU', 'bbox_mAP', 'bbox_AP50',
          'bbox_AP75', 'fps')


@pytest.mark.parametrize('table', list(HEADERS))
def test_every_number_of_the_table_is_in_paper_results(reference_dir,
                                                       table):
    """Each of the paper's Tables 1-7 as extracted: the numbers of its rows
    are exactly those of the rows of paper_results.json citing it (the
    Mask R-CNN 1x entry repeats the 3x row's FLOPs, said in its note)."""
    ours = Counter()
    seen = set()
    for row in json_rows():
        if row['table'] != table or '(3x row)' in row['model']:
            continue
        key = json.dumps(row, sort_keys=True)
        assert key not in seen
        seen.add(key)
        ours.update(float(row[f]) for f in FIELDS if f in row)
    assert ours == table_numbers(paper_text(reference_dir), table)


def test_lost_cells_are_marked_never_filled():
    """The ACmix rows of Tables 3-4 lost their mAP / AP50 / AP75; the
    ResNet 50 row of Table 3 lost everything."""
    for name, entry in PAPER['models'].items():
        for row in (entry['acmix'], entry['baseline']):
            for field in row.get('lost', []):
                assert field not in row, (name, field)
        if entry['acmix']['table'] in ('Table 3', 'Table 4') and \
                '(3x row)' not in entry['acmix']['model']:
            assert entry['acmix']['lost'] == [
                'bbox_mAP', 'bbox_AP50', 'bbox_AP75'], name
    base = PAPER['models']['retinanet_resnet_acmix_50_1x_coco']['baseline']
    assert base['lost'] == ['flops_g', 'bbox_mAP', 'bbox_AP50', 'bbox_AP75']


def test_detection_flops_deltas_are_those_of_the_paper():
    """Table 4: Swin-T 272G / 750G, the ACmix rows +3G / +4G."""
    models = PAPER['models']
    for name, delta in [('mask_rcnn_swin_acmix_t_3x_coco', 3),
                        ('cascade_mask_rcnn_swin_acmix_t_3x_coco', 4)]:
        entry = models[name]
        assert entry['acmix']['flops_g'] - entry['baseline']['flops_g'] == \
            delta


def test_model_zoo_page_is_up_to_date(tmp_path, capsys):
    """Regenerating docs/model_zoo.md from paper_results.json and the
    committed counts (nothing counted, no run) gives the committed file;
    the README's summary between its markers is replaced, and a README
    without markers is left alone."""
    readme = tmp_path / 'README.md'
    readme.write_text(f'# x\n\n{model_zoo.SUMMARY_START}\nold\n'
                      f'{model_zoo.SUMMARY_END}\n\nafter\n')
    zoo = tmp_path / 'model_zoo.md'
    tool = load_tool('analysis_tools/paper_table.py')
    rows = tool.main(['--write-docs', '--no-measure', '--work-dirs',
                      str(tmp_path / 'none'), '--zoo-out', str(zoo),
                      '--readme', str(readme), '--counts',
                      str(REPO_ROOT / 'docs/model_zoo_counts.json')])
    assert zoo.read_text() == (REPO_ROOT / 'docs/model_zoo.md').read_text(), (
        'docs/model_zoo.md is stale: python '
        'tools/analysis_tools/paper_table.py '
        '--write-docs')
    assert 'not measured' not in zoo.read_text()
    text = readme.read_text()
    summary = text.split(model_zoo.SUMMARY_START)[1].split(
        model_zoo.SUMMARY_END)[0]
    assert text.startswith('# x\n\n') and text.endswith('\n\nafter\n')
    assert '`fpn_pvt_acmix_t_40k_ade20k`' in summary
    assert '| mIoU 37.1 → 42.7 | not run |' in summary
    assert len(summary.strip().splitlines()) == 2 + sum(
        r['in_paper'] for r in rows)
    assert model_zoo.replace_between_markers('# no markers\n', 'x') == \
        '# no markers\n'
