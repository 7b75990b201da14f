"""The ACmix layers import and run with torch alone."""
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

from helpers import REPO_ROOT

OPENMMLAB = ('mmengine', 'mmcv', 'mmdet', 'mmseg', 'mmsegmentation',
             'mmpretrain', 'torchvision')

USE_LAYERS = '''
import sys, torch
import mmacmix
from mmacmix.layers import ACmixConvPath, MixingRates, WindowACmix
op = WindowACmix(embed_dims=8, num_heads=2, window_size=7, shift_size=3)
out = op(torch.randn(1, 9, 11, 8))
assert out.shape == (1, 9, 11, 8)
out.sum().backward()
from mmacmix.layers import PatchwiseACmix
op = PatchwiseACmix(16, 32, kernel_att=7)
out = op(torch.randn(2, 16, 9, 11))
assert out.shape == (2, 32, 9, 11)
out.sum().backward()
from mmacmix.layers import ACmixConv2d
op = ACmixConv2d(16, 32, kernel_size=3, stride=2, padding=1, bias=True)
out = op(torch.randn(2, 16, 9, 11))
assert out.shape == (2, 32, 5, 6)
out.sum().backward()
assert not any(m.split('.')[0] in {blocked} for m in sys.modules), 'leak'
print('ok')
'''


def test_layers_need_torch_alone(tmp_path):
    # an environment without OpenMMLab: this venv's packages but those
    site_packages = Path(sysconfig.get_paths()['purelib'])
    for entry in site_packages.iterdir():
        top = entry.name.split('-')[0].split('.')[0]
        if top not in OPENMMLAB:
            (tmp_path / entry.name).symlink_to(entry)
    env = dict(os.environ, PYTHONPATH=f'{tmp_path}{os.pathsep}{REPO_ROOT}')
    proc = subprocess.run(
        [sys.executable, '-S', '-c',
         USE_LAYERS.format(blocked=set(OPENMMLAB))],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == 'ok'
