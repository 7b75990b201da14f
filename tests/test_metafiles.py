"""The model index (model-index.yml, configs/metafiles/*.yml): every config
has one entry, every entry's config exists and builds with the parameter
count the metafile states, and the paper's numbers are those of
configs/paper_results.json (.dev_scripts/make_metafiles.py --check)."""
import json

import pytest
import yaml
from mmengine.config import Config

from mmacmix.analysis.complexity import build_model

from helpers import REPO_ROOT, run_tool

CONFIGS = REPO_ROOT / 'configs'
METAFILES = sorted((CONFIGS / 'metafiles').glob('*.yml'))
PAPER = json.loads((CONFIGS / 'paper_results.json').read_text())['models']


def load_models():
    models = {}
    for path in METAFILES:
        metafile = yaml.safe_load(path.read_text())
        collections = {c['Name'] for c in metafile['Collections']}
        for model in metafile['Models']:
            assert model['In Collection'] in collections
            assert model['Name'] not in models, f'{model["Name"]} twice'
            models[model['Name']] = model
    return models


MODELS = load_models()


def test_model_index_imports_every_metafile():
    index = yaml.safe_load((REPO_ROOT / 'model-index.yml').read_text())
    assert sorted(index['Import']) == [
        str(p.relative_to(REPO_ROOT)) for p in METAFILES]


def test_every_config_has_one_entry():
    configs = {p.stem for p in CONFIGS.glob('*.py')}
    assert set(MODELS) == configs
    for name, model in MODELS.items():
        assert model['Config'] == f'configs/{name}.py'


def test_config_file_names_are_unique():
    """mim finds a config by its file name anywhere in the package."""
    names = [p.name for p in CONFIGS.rglob('*.py')]
    assert len(names) == len(set(names))


@pytest.mark.parametrize('name', sorted(MODELS))
def test_entry_builds_with_its_parameter_count(name):
    model, _ = build_model(Config.fromfile(REPO_ROOT / MODELS[name]['Config']))
    params = sum(p.numel() for p in model.parameters())
    assert params == MODELS[name]['Metadata']['Parameters']
    assert MODELS[name]['Metadata']['FLOPs'] > 0


def paper_numbers(row):
    return sorted(v for k, v in row.items() if isinstance(v, (int, float))
                  and not isinstance(v, bool))


def test_paper_numbers_are_those_of_paper_results():
    for name, model in MODELS.items():
        row = PAPER.get(name, {}).get('acmix', {})
        listed = [v for result in model['Results']
                  for v in result['Metrics'].values()]
        assert sorted(listed) == paper_numbers(row), name
        table = row.get('table', PAPER.get(name, {}).get('table'))
        for result in model['Results']:
            assert result.get('Paper Table') == table


def test_check_passes_and_catches_drift(tmp_path):
    proc = run_tool(['.dev_scripts/make_metafiles.py', '--check'],
                    cwd=tmp_path)
    assert proc.stdout.strip() == f'{len(METAFILES) + 1} files up to date'
    paper = json.loads((CONFIGS / 'paper_results.json').read_text())
    name = next(n for n in sorted(MODELS) if paper_numbers(
        paper['models'].get(n, {}).get('acmix', {})))
    row = paper['models'][name]['acmix']
    field = next(k for k, v in row.items() if isinstance(v, (int, float)))
    row[field] += 1
    drifted = tmp_path / 'paper_results.json'
    drifted.write_text(json.dumps(paper))
    proc = run_tool(['.dev_scripts/make_metafiles.py', '--check', '--paper',
                     drifted], cwd=tmp_path, check=False)
    assert proc.returncode != 0
    family = MODELS[name]['In Collection'].lower().replace('-', '_')
    assert [line for line in proc.stderr.splitlines()
            if line.startswith('error:')] == [
        f'error: out of date: configs/metafiles/{family}.yml; run python '
        '.dev_scripts/make_metafiles.py (with --reuse-counts if only the '
        "paper's numbers changed)"]
