"""The files mmacmix installs beside its code, under ``mmacmix/.mim/`` as
``mim`` expects: ``configs/``, ``tools/`` and ``model-index.yml``. A wheel
carries copies of them; an editable install links them to the checkout
(``setup.py``)."""
from importlib.resources import files
from pathlib import Path

MIM_DIR = Path(str(files('mmacmix'))) / '.mim'


def config_dir() -> Path:
    """The folder of mmacmix's configs (links resolved).

    Raises:
        FileNotFoundError: mmacmix is not installed with its configs, e.g.
            a checkout put on ``PYTHONPATH`` without ``pip install -e .``.
    """
    folder = MIM_DIR / 'configs'
    if not folder.is_dir():
        raise FileNotFoundError(
            f"mmacmix's configs are not installed ({folder} is missing): "
            'install mmacmix with pip (`pip install -e .` in a checkout)')
    return folder.resolve()


def find_config(path: str) -> str:
    """``path`` if it is a file (or a ``package::path`` config), else the
    installed config it names: a path under ``configs/``
    (``configs/toy/swin_acmix_toy_in1k.py``) or a file name
    (``swin_acmix_t_in1k.py``, as ``mim`` takes them). A path that names
    none is returned as it is, for the caller's error."""
    if '::' in path or Path(path).is_file():
        return path
    try:
        folder = config_dir()
    except FileNotFoundError:
        return path
    relative = Path(path)
    if relative.parts[:1] == ('configs', ):
        relative = Path(*relative.parts[1:])
    if (folder / relative).is_file():
        return str(folder / relative)
    if len(relative.parts) == 1:
        found = sorted(folder.rglob(relative.name))
        if len(found) == 1:
            return str(found[0])
    return path
