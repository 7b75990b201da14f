"""Helpers for the end-to-end tests: run the project's tools as a user
would, in a folder that holds the toy data under data/toy."""
import contextlib
import functools
import importlib.util
import json
import os
import subprocess
import sys
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
TOOLS = REPO_ROOT / 'tools'


def tool_env(**extra):
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(
        [str(REPO_ROOT)] + [p for p in [env.get('PYTHONPATH')] if p])
    # the venv's python and torchrun for the shell launchers
    env['PYTHON'] = sys.executable
    env['PATH'] = os.pathsep.join([str(Path(sys.executable).parent),
                                   env.get('PATH', '')])
    env.setdefault('OMP_NUM_THREADS', '1')
    env.update(extra)
    return env


def load_tool(relpath):
    """``tools/<relpath>`` as a module, to call its ``main`` in-process."""
    path = TOOLS / relpath
    spec = importlib.util.spec_from_file_location(path.stem, path)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


def run_tool(args, cwd, timeout=600, check=True, **env):
    """Run ``python tools/<args...>`` (or a .sh launcher; a developer
    script as ``.dev_scripts/<name>``) from ``cwd``."""
    script = (REPO_ROOT / args[0] if args[0].startswith('.dev_scripts/') else
              TOOLS / args[0])
    cmd = (['bash', str(script)] if script.suffix == '.sh' else
           [sys.executable, str(script)]) + [str(a) for a in args[1:]]
    proc = subprocess.run(cmd, cwd=cwd, env=tool_env(**env), timeout=timeout,
                          capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(
            f'{" ".join(cmd)} exited {proc.returncode}\n'
            f'--- stdout ---\n{proc.stdout[-4000:]}\n'
            f'--- stderr ---\n{proc.stderr[-6000:]}')
    return proc


def wait_for_file(path, proc, timeout=300, poll=0.2):
    """Wait until ``path`` exists while ``proc`` runs (its first checkpoint,
    say); fail if ``proc`` ends first or ``timeout`` seconds pass."""
    deadline = time.time() + timeout
    while not Path(path).exists():
        assert proc.poll() is None, f'the process ended before {path}'
        assert time.time() < deadline, f'no {path} within {timeout} s'
        time.sleep(poll)


def printed_metrics(proc):
    """The metrics line tools/test.py prints."""
    for line in proc.stdout.splitlines():
        if line.startswith('metrics: '):
            return json.loads(line[len('metrics: '):])
    raise AssertionError(f'no metrics line in output:\n{proc.stdout[-3000:]}')


def logged_train_iters(work_dir):
    """Iterations logged by the LoggerHook in every run in ``work_dir``,
    per run (timestamped folder), in order."""
    runs = []
    for scalars in sorted(Path(work_dir).glob('*/vis_data/scalars.json')):
        iters = [json.loads(line)['iter'] for line in scalars.read_text()
                 .splitlines() if '"loss"' in line]
        runs.append(iters)
    return runs


@contextlib.contextmanager
def serve_folder(folder, max_requests=10):
    """Serve the files of ``folder`` over HTTP on 127.0.0.1 only, from a
    thread, answering at most ``max_requests`` requests (later ones get
    503); yields the base URL. The server is closed on exit."""
    served = []

    class Handler(SimpleHTTPRequestHandler):

        def do_GET(self):
            served.append(self.path)
            if len(served) > max_requests:
                self.send_error(503, 'request limit of the test server')
                return
            super().do_GET()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(
        ('127.0.0.1', 0),
        functools.partial(Handler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f'http://127.0.0.1:{server.server_address[1]}'
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


# small archs of the four backbone families and an input size each: the
# smallest the architecture allows (ResNet-ACmix and SAN-ACmix need maps of
# more than 3 pixels at their last stage, for the reflection padding)
SMALL_BACKBONES = ('swin', 'pvt', 'resnet', 'san')


def small_backbone(name):
    """``(model, input shape)`` of a small backbone of family ``name`` (one
    of :data:`SMALL_BACKBONES`), every stage an output, no random drop
    path (comparisons across devices, precisions and compilers)."""
    import torch

    from mmacmix.models.backbones.pvt_acmix import PVTACmix
    from mmacmix.models.backbones.resnet_acmix import ResNetACmix
    from mmacmix.models.backbones.san_acmix import SANACmix
    from mmacmix.models.backbones.swin_acmix import SwinACmix
    torch.manual_seed(0)
    if name == 'swin':
        return SwinACmix(
            dict(embed_dims=32, depths=[1, 1, 2, 1], num_heads=[1, 2, 4, 8]),
            drop_path_rate=0., out_indices=(0, 1, 2, 3)), (2, 3, 64, 64)
    if name == 'pvt':
        return PVTACmix(
            dict(embed_dims=[16, 32, 40, 64], depths=[1, 1, 1, 1],
                 num_heads=[1, 2, 5, 8], sr_ratios=[8, 4, 2, 1],
                 mlp_ratios=[2, 2, 2, 2]),
            drop_path_rate=0., out_indices=(0, 1, 2, 3)), (2, 3, 64, 64)
    if name == 'resnet':
        return ResNetACmix(26, stem_channels=8, base_channels=4,
                           out_indices=(0, 1, 2, 3)), (2, 3, 128, 128)
    if name == 'san':
        return SANACmix(10, stem_channels=8,
                        stage_channels=(32, 32, 64, 64, 96),
                        out_indices=(0, 1, 2, 3, 4)), (2, 3, 128, 128)
    raise ValueError(f'no small backbone {name!r}')
