"""docs/recipes.md, the audit of every config's recipe against the paper's
Appendix B, against the configs themselves: each config has its row, and
the row says what the resolved config does."""
from mmengine.config import Config

from mmacmix.analysis.model_zoo import stock_configs
from mmacmix.analysis.recipe import ITEMS, summarize

from helpers import REPO_ROOT

RECIPES = REPO_ROOT / 'docs/recipes.md'


def audited_rows():
    """``{config name: [cells]}`` of the config rows of docs/recipes.md."""
    rows = {}
    for line in RECIPES.read_text().splitlines():
        if line.startswith('| `'):
            cells = [c.strip() for c in line.strip().strip('|').split(' | ')]
            name = cells[0].strip('`')
            assert name not in rows, f'{name} audited twice'
            rows[name] = cells[1:]
    return rows


def test_every_config_is_audited_as_it_is():
    rows = audited_rows()
    assert set(rows) == set(stock_configs())
    header = next(line for line in RECIPES.read_text().splitlines()
                  if line.startswith('| row |'))
    assert header == '| row | ' + ' | '.join(ITEMS.values()) + ' |'
    for name, path in stock_configs().items():
        recipe = summarize(Config.fromfile(path))
        assert rows[name] == list(recipe.values()), (
            f'docs/recipes.md disagrees with configs/{name}.py')


def test_audited_fixes_are_in_the_configs():
    """The values this audit changed: Semantic FPN as PVT's 8-GPU recipe,
    Appendix B's 500-iteration warm-up for the Swin detectors, PVT's
    repeated augmentation."""
    configs = stock_configs()
    fpn = summarize(Config.fromfile(configs['fpn_pvt_acmix_s_40k_ade20k']))
    assert (fpn['lr'], fpn['batch'], fpn['schedule']) == (
        '0.0002', '32 (8×4)', '40k it, poly 0.9')
    for name in ('mask_rcnn_swin_acmix_t_3x_coco',
                 'cascade_mask_rcnn_swin_acmix_t_3x_coco'):
        recipe = summarize(Config.fromfile(configs[name]))
        assert recipe['warmup'] == 'linear 500 it from ×0.001'
    pvt = summarize(Config.fromfile(configs['pvt_acmix_s_in1k']))
    assert 'repeated aug' in pvt['augmentation']
