"""A few hundred corrupt, truncated, bit-flipped and random files through
mmengine's loader (made safe by mmacmix): each one loads, or ends in
CheckpointError or UnsafeCheckpointError, nothing else, and none runs
code. Seeded, a few seconds."""
import io
import os
import random

import numpy as np
import pytest
import torch
from mmengine.logging import MessageHub
from mmengine.runner.checkpoint import _load_checkpoint

import mmacmix  # noqa: F401  (installs the safe loader)
from mmacmix.engine.checkpoint import CheckpointError

SEED = 1234


class _TouchesMarker:

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}', ))


def checkpoint_bytes(obj, **save_args):
    buffer = io.BytesIO()
    torch.save(obj, buffer, **save_args)
    return buffer.getvalue()


def runner_like(marker=None):
    """A small checkpoint shaped like the runner's: weights, numpy meta,
    the message hub; with a hostile object in it if ``marker`` is given."""
    hub = MessageHub.get_instance('fuzz')
    hub.update_scalar('train/loss', np.float64(0.5))
    meta = {'epoch': 1, 'best': np.float32(0.25)}
    if marker is not None:
        meta['hook'] = _TouchesMarker(marker)
    return {'state_dict': {'conv.weight': torch.randn(4, 3, 3, 3),
                           'conv.bias': torch.zeros(4)},
            'meta': meta, 'message_hub': hub.state_dict()}


def variants(data, rng, flips):
    """Truncations every few bytes, single and burst bit flips."""
    step = max(1, len(data) // 60)
    for end in range(0, len(data), step):
        yield 'truncated', data[:end]
    for _ in range(flips):
        damaged = bytearray(data)
        for _ in range(rng.choice((1, 1, 4, 16))):
            damaged[rng.randrange(len(damaged))] ^= 1 << rng.randrange(8)
        yield 'flipped', bytes(damaged)


def random_files(rng, count):
    heads = (b'', b'PK\x03\x04', b'\x80\x02', b'\x80\x04\x95', b'{"a": 1}')
    for _ in range(count):
        body = bytes(rng.randrange(256)
                     for _ in range(rng.randrange(0, 400)))
        yield 'random', rng.choice(heads) + body
    yield 'text', b'epoch,loss\n1,0.5\n' * 10
    yield 'text', 'ünïcödé checkpoint?\n'.encode('latin-1')


def test_fuzzed_files_end_in_checkpoint_errors(tmp_path):
    rng = random.Random(SEED)
    torch.manual_seed(SEED)
    marker = tmp_path / 'pwned'
    sources = {
        'good': checkpoint_bytes(runner_like()),
        'good legacy': checkpoint_bytes(
            runner_like(), _use_new_zipfile_serialization=False),
        'hostile': checkpoint_bytes(runner_like(marker)),
        'hostile protocol 4': checkpoint_bytes(runner_like(marker),
                                               pickle_protocol=4),
    }
    cases = [(f'{kind} {source}', damaged)
             for source, data in sources.items()
             for kind, damaged in variants(data, rng, 40)]
    cases += list(random_files(rng, 60))
    assert len(cases) >= 400
    outcomes = {}
    path = tmp_path / 'fuzzed.pth'
    for kind, data in cases:
        path.write_bytes(data)
        try:
            _load_checkpoint(str(path), map_location='cpu')
            outcome = 'loaded'
        except CheckpointError as err:
            outcome = type(err).__name__
            assert 'weights_only' not in str(err)
        outcomes.setdefault(kind, set()).add(outcome)
        assert not marker.exists(), (kind, data[:40])
    # what is cut or random never passes for a checkpoint, and a cut
    # good file is not called unsafe
    for kind in ('truncated good', 'truncated good legacy', 'random',
                 'text'):
        assert outcomes[kind] == {'CheckpointError'}, kind
    # a hostile file damaged where the zip still reads is still unsafe
    assert 'UnsafeCheckpointError' in outcomes['flipped hostile']
    assert 'UnsafeCheckpointError' in outcomes['flipped hostile protocol 4']
    assert 'CheckpointError' in outcomes['flipped good']


@pytest.mark.parametrize('protocol', [2, 4])
def test_hostile_file_cut_anywhere_is_never_run(tmp_path, protocol):
    """Every prefix of a hostile pickle (the exploit up to any byte): the
    payload never runs."""
    marker = tmp_path / 'pwned'
    data = checkpoint_bytes({'x': _TouchesMarker(marker)},
                            pickle_protocol=protocol,
                            _use_new_zipfile_serialization=False)
    path = tmp_path / 'cut.pth'
    for end in range(len(data) + 1):
        path.write_bytes(data[:end])
        with pytest.raises(CheckpointError):
            _load_checkpoint(str(path), map_location='cpu')
    assert not marker.exists()
