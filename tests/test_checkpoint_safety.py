"""Checkpoints load under torch's weights_only=True: hostile files are
refused without running, broken files give a clear error."""
import os

import pytest
import torch
from mmengine.runner.checkpoint import CheckpointLoader, _load_checkpoint

import mmacmix  # noqa: F401  (installs the safe loader)
from mmacmix.utils.checkpoint import CheckpointError, UnsafeCheckpointError


class _RunsShell:
    """Unpickling this calls os.system: the classic hostile checkpoint."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}', ))


@pytest.fixture
def hostile_checkpoint(tmp_path):
    marker = tmp_path / 'pwned'
    path = tmp_path / 'hostile.pth'
    torch.save({'state_dict': {'w': torch.ones(2)},
                'meta': _RunsShell(marker)}, path)
    return path, marker


def test_hostile_checkpoint_is_refused_and_not_run(hostile_checkpoint):
    path, marker = hostile_checkpoint
    with pytest.raises(UnsafeCheckpointError,
                       match=r'refused .*posix\.system.*Nothing in the file '
                       'was executed'):
        _load_checkpoint(str(path), map_location='cpu')
    assert not marker.exists()


def test_weights_only_stays_on_for_everything_else(hostile_checkpoint):
    # the allowlist is narrow: a plain torch.load still refuses the file
    path, marker = hostile_checkpoint
    with pytest.raises(Exception, match='posix.system'):
        torch.load(path)
    assert not marker.exists()


def test_local_scheme_is_ours():
    from mmacmix.utils.checkpoint import load_checkpoint_file
    assert CheckpointLoader._get_checkpoint_loader(
        '/some/file.pth') is load_checkpoint_file


@pytest.mark.parametrize('damage', ['truncated', 'garbage', 'empty'])
def test_broken_checkpoint_gives_clear_error(tmp_path, damage):
    good = tmp_path / 'good.pth'
    torch.save({'state_dict': {'w': torch.randn(64, 64)}}, good)
    data = good.read_bytes()
    broken = tmp_path / f'{damage}.pth'
    broken.write_bytes({'truncated': data[:len(data) // 2],
                        'garbage': b'not a checkpoint at all',
                        'empty': b''}[damage])
    with pytest.raises(CheckpointError,
                       match=f'checkpoint {broken} is (truncated, )?corrupt'):
        _load_checkpoint(str(broken), map_location='cpu')


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
