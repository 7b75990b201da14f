"""mmacmix registers into mmengine's root MODELS: mmdet, mmseg and
mmpretrain configs all build its backbones, and a misspelt type name gives
the registry's own error."""
import pytest
from mmengine.registry import MODELS as ROOT_MODELS
from mmengine.registry import init_default_scope

import mmacmix  # noqa: F401

SCOPES = ('mmdet', 'mmseg', 'mmpretrain')


def _scope_models(scope):
    init_default_scope(scope)
    return __import__(f'{scope}.registry', fromlist=['MODELS']).MODELS


@pytest.mark.parametrize('scope', SCOPES)
def test_misspelt_type_gives_registry_error(scope):
    models = _scope_models(scope)
    with pytest.raises(KeyError, match='SwinACmx is not in the .*registry'):
        models.build(dict(type='SwinACmx', arch='tiny'))


@pytest.mark.parametrize('scope', SCOPES)
def test_root_registry_reaches_every_scope(scope):
    models = _scope_models(scope)
    assert models.parent is ROOT_MODELS
    acmix = [n for n in ROOT_MODELS.module_dict if n.endswith('ACmix')]
    assert 'SwinACmix' in acmix
    for name in acmix:
        assert models.get(name) is ROOT_MODELS.get(name)
    backbone = models.build(dict(
        type='SwinACmix',
        arch=dict(embed_dims=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 2])))
    assert type(backbone) is ROOT_MODELS.get('SwinACmix')
