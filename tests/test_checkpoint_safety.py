"""Checkpoints load under torch's weights_only=True from every source
mmengine reads (files, http(s) with its cache, every registered prefix,
schemes registered later): hostile files are refused without running,
broken files give a clear error, and a state dict must fit its model."""
import os
import os.path as osp
import sys
import types
from urllib.parse import urlparse

import pytest
import torch
from mmengine.runner.checkpoint import (CheckpointLoader, _load_checkpoint,
                                        get_external_models, get_mmcls_models,
                                        get_torchvision_models,
                                        load_checkpoint)
from torch import nn

import mmacmix  # noqa: F401  (installs the safe loader)
from mmacmix.engine.checkpoint import (CheckpointError,
                                       CheckpointMismatchError,
                                       UnsafeCheckpointError,
                                       load_checkpoint_file, require_loaded)

from helpers import serve_folder

UNSAFE = r'refused .*posix\.system.*Nothing in the file was executed'


class _RunsShell:
    """Unpickling this calls os.system: the classic hostile checkpoint."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}', ))


def save_hostile(path, marker, **save_args):
    torch.save({'state_dict': {'w': torch.ones(2)},
                'meta': _RunsShell(marker)}, path, **save_args)
    return path


@pytest.fixture
def hostile_checkpoint(tmp_path):
    marker = tmp_path / 'pwned'
    return save_hostile(tmp_path / 'hostile.pth', marker), marker


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    """An empty torch hub cache; the folder where cached downloads live."""
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    monkeypatch.setenv('NO_PROXY', '127.0.0.1')
    return tmp_path / 'torch_home' / 'hub' / 'checkpoints'


def test_hostile_checkpoint_is_refused_and_not_run(hostile_checkpoint):
    path, marker = hostile_checkpoint
    with pytest.raises(UnsafeCheckpointError, match=UNSAFE):
        _load_checkpoint(str(path), map_location='cpu')
    assert not marker.exists()


@pytest.mark.parametrize('zipped', [True, False])
@pytest.mark.parametrize('protocol', range(6))
def test_hostile_checkpoint_of_any_protocol_is_unsafe(tmp_path, protocol,
                                                      zipped):
    """torch's weights_only unpickler stops protocols 0, 4 and 5 at an
    opcode it does not support (DICT, FRAME) before their GLOBAL: they are
    still called unsafe, named by their global."""
    marker = tmp_path / 'pwned'
    path = save_hostile(tmp_path / 'hostile.pth', marker,
                        pickle_protocol=protocol,
                        _use_new_zipfile_serialization=zipped)
    with pytest.raises(UnsafeCheckpointError, match=UNSAFE):
        load_checkpoint_file(str(path))
    assert not marker.exists()


def test_weights_only_stays_on_for_everything_else(hostile_checkpoint):
    # the allowlist is narrow: a plain torch.load still refuses the file
    path, marker = hostile_checkpoint
    with pytest.raises(Exception, match='posix.system'):
        torch.load(path)
    assert not marker.exists()


def test_torch_load_outside_checkpoint_loaders_is_torch_s(tmp_path):
    """Only loaders of mmengine's CheckpointLoader are forced to
    weights_only; torch.load elsewhere keeps its arguments."""
    torch.save({'n': 3}, tmp_path / 'plain.pth')
    assert torch.load(tmp_path / 'plain.pth', weights_only=False) == {'n': 3}


def test_every_scheme_is_guarded():
    for path in ('/some/file.pth', 'http://x/y.pth', 'torchvision://a',
                 'open-mmlab://a', 'mmcls://a', 'pavi://a', 's3://a/b'):
        loader = CheckpointLoader._get_checkpoint_loader(path)
        assert loader.mmacmix_guarded
    local = CheckpointLoader._get_checkpoint_loader('/some/file.pth')
    assert local.__wrapped__ is load_checkpoint_file


# ------------------------------------------------------- every source


def test_http_download_is_refused_and_not_run(tmp_path, torch_home):
    marker = tmp_path / 'pwned'
    save_hostile(tmp_path / 'evil.pth', marker)
    with serve_folder(tmp_path) as url:
        with pytest.raises(UnsafeCheckpointError, match=UNSAFE) as err:
            _load_checkpoint(f'{url}/evil.pth', map_location='cpu')
        # the cached copy is refused as well, without a download
        with pytest.raises(UnsafeCheckpointError, match=UNSAFE):
            _load_checkpoint(f'{url}/evil.pth', map_location='cpu')
    assert f'{url}/evil.pth (read from {torch_home}' in str(err.value)
    assert (torch_home / 'evil.pth').is_file()
    assert not marker.exists()


def test_http_missing_file_is_a_checkpoint_error(tmp_path, torch_home):
    with serve_folder(tmp_path) as url:
        with pytest.raises(CheckpointError, match='HTTP Error 404'):
            _load_checkpoint(f'{url}/absent.pth', map_location='cpu')


def _first_url(models):
    return next((name, url) for name, url in models.items()
                if url.startswith(('http://', 'https://')))


@pytest.mark.parametrize('prefix', [
    'torchvision://', 'modelzoo://', 'open-mmlab://', 'openmmlab://',
    'mmcls://'
])
def test_prefixes_of_fixed_urls_are_refused(prefix, tmp_path, torch_home):
    """The hostile file is where torch.hub's cache looks first: no
    network."""
    models = {'torchvision://': get_torchvision_models,
              'modelzoo://': get_torchvision_models,
              'open-mmlab://': get_external_models,
              'openmmlab://': get_external_models,
              'mmcls://': get_mmcls_models}[prefix]()
    name, url = _first_url(models)
    marker = tmp_path / 'pwned'
    torch_home.mkdir(parents=True)
    save_hostile(torch_home / osp.basename(urlparse(url).path), marker)
    with pytest.raises(UnsafeCheckpointError, match=UNSAFE):
        _load_checkpoint(prefix + name, map_location='cpu')
    assert not marker.exists()


def test_open_mmlab_local_model_is_refused(tmp_path, monkeypatch):
    """open-mmlab:// names may map to a file under MMENGINE_HOME, read with
    a bare torch.load."""
    monkeypatch.setenv('MMENGINE_HOME', str(tmp_path))
    (tmp_path / 'open_mmlab.json').write_text('{"evil": "evil.pth"}')
    marker = tmp_path / 'pwned'
    save_hostile(tmp_path / 'evil.pth', marker)
    with pytest.raises(UnsafeCheckpointError, match=UNSAFE):
        _load_checkpoint('open-mmlab://evil', map_location='cpu')
    assert not marker.exists()


def test_pavi_is_refused(tmp_path, monkeypatch):
    """pavi's model cloud, stood in for by a module that downloads the
    hostile file."""
    marker = tmp_path / 'pwned'
    hostile = save_hostile(tmp_path / 'evil.pth', marker)

    class Model:
        name = 'evil.pth'

        def download(self, dst):
            with open(dst, 'wb') as f:
                f.write(hostile.read_bytes())

    modelcloud = types.ModuleType('pavi.modelcloud')
    modelcloud.get = lambda path: Model()
    pavi = types.ModuleType('pavi')
    pavi.modelcloud = modelcloud
    monkeypatch.setitem(sys.modules, 'pavi', pavi)
    monkeypatch.setitem(sys.modules, 'pavi.modelcloud', modelcloud)
    with pytest.raises(UnsafeCheckpointError, match=UNSAFE):
        _load_checkpoint('pavi://team/evil', map_location='cpu')
    assert not marker.exists()


@pytest.mark.parametrize('path', ['s3://bucket/evil.pth',
                                  'open-mmlab:s3://bucket/evil.pth',
                                  'petrel://bucket/evil.pth'])
def test_storage_backends_are_refused(path, tmp_path, monkeypatch):
    """s3/petrel through mmengine's file backend, its client stood in for by
    one that serves the hostile bytes from memory."""
    marker = tmp_path / 'pwned'
    data = save_hostile(tmp_path / 'evil.pth', marker).read_bytes()

    class Client:

        def __init__(self, **kwargs):
            pass

        def Get(self, filepath):
            return data

    client = types.ModuleType('petrel_client.client')
    client.Client = Client
    petrel = types.ModuleType('petrel_client')
    petrel.client = client
    monkeypatch.setitem(sys.modules, 'petrel_client', petrel)
    monkeypatch.setitem(sys.modules, 'petrel_client.client', client)
    with pytest.raises(UnsafeCheckpointError, match=UNSAFE):
        _load_checkpoint(path, map_location='cpu')
    assert not marker.exists()


@pytest.fixture
def later_scheme(tmp_path):
    """A scheme registered after mmacmix was imported, by a library that
    asks for weights_only=False."""
    folder = tmp_path / 'store'
    folder.mkdir()

    def load_from_later(filename, map_location=None):
        path = folder / filename[len('later://'):]
        return torch.load(path, map_location=map_location, weights_only=False)

    CheckpointLoader.register_scheme('later://', loader=load_from_later)
    yield folder
    del CheckpointLoader._schemes['later://']


def test_scheme_registered_later_is_refused(later_scheme, tmp_path):
    marker = tmp_path / 'pwned'
    save_hostile(later_scheme / 'evil.pth', marker)
    with pytest.raises(UnsafeCheckpointError, match=UNSAFE):
        _load_checkpoint('later://evil.pth', map_location='cpu')
    assert not marker.exists()
    # its good files still load
    torch.save({'state_dict': {'w': torch.ones(2)}}, later_scheme / 'ok.pth')
    loaded = _load_checkpoint('later://ok.pth', map_location='cpu')
    assert torch.equal(loaded['state_dict']['w'], torch.ones(2))


# ------------------------------------------------------- broken files


@pytest.mark.parametrize('damage', ['truncated', 'garbage', 'empty', 'text'])
def test_broken_checkpoint_gives_clear_error(tmp_path, damage):
    good = tmp_path / 'good.pth'
    torch.save({'state_dict': {'w': torch.randn(64, 64)}}, good)
    data = good.read_bytes()
    broken = tmp_path / f'{damage}.pth'
    broken.write_bytes({'truncated': data[:len(data) // 2],
                        'garbage': b'not a checkpoint at all',
                        'empty': b'',
                        'text': b'hello\nworld\n' * 20}[damage])
    with pytest.raises(CheckpointError,
                       match=f'checkpoint {broken} is (truncated, )?corrupt'
                       ) as err:
        _load_checkpoint(str(broken), map_location='cpu')
    assert type(err.value) is CheckpointError
    # torch's advice to retry unsafely is not repeated
    assert 'weights_only' not in str(err.value)


def test_non_dict_checkpoint_is_refused(tmp_path):
    torch.save([torch.ones(1)], tmp_path / 'list.pth')
    with pytest.raises(CheckpointError, match='holds a list, not a dict'):
        _load_checkpoint(str(tmp_path / 'list.pth'), map_location='cpu')


def test_missing_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match='can not be found'):
        _load_checkpoint(str(tmp_path / 'nope.pth'), map_location='cpu')


def test_runner_state_loads_with_weights_only(tmp_path):
    """What mmengine's runner saves beside tensors (message hub with
    HistoryBuffer of numpy values, numpy scalars) loads again."""
    import numpy as np
    from mmengine.logging import MessageHub
    hub = MessageHub.get_instance('test_runner_state_loads')
    hub.update_scalar('train/loss', np.float64(0.5))
    hub.update_scalar('train/acc', np.float32(0.25))
    hub.update_info('best_score', np.float64(0.7))
    ckpt = {'meta': {'epoch': 1, 'iter': 4, 'best': np.float32(3.0)},
            'state_dict': {'w': torch.ones(1)},
            'message_hub': hub.state_dict()}
    torch.save(ckpt, tmp_path / 'runner.pth')
    loaded = _load_checkpoint(str(tmp_path / 'runner.pth'),
                              map_location='cpu')
    assert loaded['meta']['best'] == np.float32(3.0)
    loaded_hub = loaded['message_hub']['log_scalars']['train/loss']
    assert loaded_hub.current() == 0.5


# ------------------------------------------------------- fit to the model


def small_model():
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4),
                         nn.Conv2d(4, 4, 1), nn.Linear(4, 2))


@pytest.fixture
def saved(tmp_path):
    """Save a state dict, return its path."""

    def save(state_dict, name='ckpt.pth'):
        torch.save({'state_dict': state_dict}, tmp_path / name)
        return str(tmp_path / name)

    return save


def test_exact_checkpoint_loads_under_every_rule(saved):
    source = small_model()
    path = saved(source.state_dict())
    for rule in ('all', 'most'):
        model = small_model()
        with require_loaded(rule):
            load_checkpoint(model, path)
        for key, value in source.state_dict().items():
            assert torch.equal(model.state_dict()[key], value)


def test_checkpoint_of_another_model_is_refused(saved):
    other = {f'other.{i}.weight': torch.ones(3) for i in range(4)}
    path = saved(other)
    model = small_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for rule in ('all', 'most'):
        with require_loaded(rule), pytest.raises(
                CheckpointMismatchError,
                match=f'checkpoint {path} does not fit Sequential: 0 of its '
                '10 tensors load .*10 missing, 0 shape-mismatched, 4 '
                r'unexpected; missing: 0\.weight, 0\.bias, 1\.weight \(\+7 '
                r'more\); unexpected: other\.0\.weight.*--allow-partial'):
            load_checkpoint(model, path)
    # nothing was loaded
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key])


def test_every_shape_wrong_is_refused(saved):
    wrong = {k: torch.zeros(*v.shape, 2)
             for k, v in small_model().state_dict().items()}
    path = saved(wrong)
    with require_loaded('most'), pytest.raises(
            CheckpointMismatchError,
            match=r'0 of its 10 tensors load .* 10 shape-mismatched.*'
            r'0\.weight \[4, 3, 3, 3, 2\] in the file, \[4, 3, 3, 3\] in '
            'the model'):
        load_checkpoint(small_model(), path)


def test_part_of_the_model_all_versus_most(saved):
    """Two of the four layers' tensors (6 of 10): too little to evaluate,
    enough to fine-tune from."""
    state = {k: v for k, v in small_model().state_dict().items()
             if k.startswith(('0.', '1.'))}
    path = saved(state)
    with require_loaded('all'), pytest.raises(
            CheckpointMismatchError, match='6 of its 10 tensors load'):
        load_checkpoint(small_model(), path)
    with require_loaded('most'):
        load_checkpoint(small_model(), path)
    with require_loaded('off'):
        load_checkpoint(small_model(), saved({'x': torch.ones(1)}, 'x.pth'))


def test_pretrained_prefix(saved):
    """A backbone from a classifier's checkpoint by its prefix; a prefix
    that matches no key names itself and the file's keys."""
    from mmengine.model.weight_init import PretrainedInit
    source = small_model()
    path = saved({'backbone.' + k: v for k, v in source.state_dict().items()}
                 | {'head.fc.weight': torch.ones(2)})
    model = small_model()
    with require_loaded('most'):
        PretrainedInit(path, prefix='backbone.')(model)
    for key, value in source.state_dict().items():
        assert torch.equal(model.state_dict()[key], value)
    with pytest.raises(
            CheckpointMismatchError,
            match=f"prefix 'neck.' matches none of the 12 keys of checkpoint "
            rf'{path} \(e.g. backbone.0.weight, .*\(\+9 more\)\)'):
        PretrainedInit(path, prefix='neck')(model)
    # without the prefix, a classifier's keys fill nothing of a backbone
    with require_loaded('most'), pytest.raises(
            CheckpointMismatchError, match='0 of its 10 tensors load'):
        PretrainedInit(path)(model)
