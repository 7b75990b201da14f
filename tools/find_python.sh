# Sourced by the launchers (dist_*.sh, slurm_*.sh): sets PYTHON to the
# interpreter to run. An explicit PYTHON wins; an active environment
# (VIRTUAL_ENV, CONDA_PREFIX) means its `python`; otherwise the project's
# .venv, when it exists, so the launchers work from a fresh shell.
if [ -z "${PYTHON:-}" ]; then
    _root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    if [ -z "${VIRTUAL_ENV:-}" ] && [ -z "${CONDA_PREFIX:-}" ] \
        && [ -x "$_root/.venv/bin/python" ]; then
        PYTHON="$_root/.venv/bin/python"
    else
        PYTHON=python
    fi
    unset _root
fi
