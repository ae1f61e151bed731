"""Peer packages for side-by-side benchmarks, each in its own virtual environment.

A peer is installed from PyPI into ``benchmarks/.venvs/<name>`` (git-ignored), with the
CPU build of ``torch==2.13.0`` installed first so that pip does not pull the CUDA wheels.
Environment variables a peer needs at run time are returned by :func:`peer_env`.
"""

from __future__ import annotations

import fcntl
import json
import os
import platform
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
VENVS = ROOT / "benchmarks" / ".venvs"
TORCH = "torch==2.13.0"

# name -> (pip requirements, extra environment variables)
PEERS: dict[str, tuple[list[str], dict[str, str]]] = {
    # mace-torch 0.3.16 pins e3nn 0.4.4, whose constants loader and MACE's own model
    # loading use torch.load without weights_only; torch >= 2.6 refuses that by default.
    "mace": (["mace-torch==0.3.16"], {"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}),
    "nequip": (["nequip==0.19.1"], {}),
    # schnetpack 2.2.0 declares Python >= 3.12; the CPU torch 2.13.0 wheel used by every
    # side is for this machine's 3.11, where schnetpack's code runs unchanged. It is
    # installed without its dependencies (ignoring its Python requirement), which are then
    # installed as usual (see `DEPENDENCIES_AFTER`): ignoring the Python requirement for
    # the whole resolution let pip pick NumPy 2.5 (Python >= 3.12), which it then tried to
    # build from source and failed (fresh environment, 2026-12-07).
    "schnetpack": (["--ignore-requires-python", "--no-deps", "schnetpack==2.2.0"], {}),
}

DEPENDENCIES_AFTER = {"schnetpack": "schnetpack"}
"""Peers installed with ``--no-deps``: the distribution whose declared dependencies
(its ``Requires-Dist`` without extras) are installed next, with the usual resolution."""


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), for results tables."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run_meta(threads: int) -> dict[str, str]:
    """Machine (CPU and threads), UTC date and versions, for a results file."""
    import torch

    import nnip

    return {"machine": f"{cpu_name()}, {threads} threads",
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
            "nnip": nnip.__version__, "torch": torch.__version__}


def update_json(path: Path, change: Callable[[Any], None], empty: Any) -> Any:
    """Apply ``change(data)`` to the JSON file ``path`` under a file lock (``path`` with
    suffix ``.lock``), reading it afresh (``empty`` when missing) and writing it
    atomically, so that runs side by side keep each other's rows; returns the data."""
    from nnip._files import atomic_write

    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = json.loads(path.read_text()) if path.exists() else empty
        change(data)
        atomic_write(path, lambda handle: json.dump(data, handle, indent=1), binary=False)
    return data


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """Lines of a Markdown table: the header, its rule, one line per row of cells."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def venv_python(name: str) -> Path:
    """Path of the peer's Python interpreter (the peer need not be installed yet)."""
    return VENVS / name / "bin" / "python"


def peer_env(name: str) -> dict[str, str]:
    """Process environment for running the peer (os.environ plus its variables)."""
    env = dict(os.environ)
    env.update(PEERS[name][1])
    env.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))
    return env


def ensure_peer(name: str, quiet: bool = True) -> Path:
    """Create the peer's environment when missing and return its Python interpreter.

    Raises:
        RuntimeError: pip failed; the message carries the end of pip's output.
    """
    if name not in PEERS:
        raise KeyError(f"unknown peer {name!r}; known: {sorted(PEERS)}")
    python = venv_python(name)
    marker = VENVS / name / ".nnip-installed"
    requirements = PEERS[name][0]
    wanted = "\n".join([TORCH, *requirements])
    if marker.is_file() and marker.read_text() == wanted and python.is_file():
        return python
    print(f"installing peer {name!r} ({', '.join(requirements)}) into {VENVS / name} ...",
          flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(VENVS / name)], check=True)

    def pip_install(step: list[str]) -> None:
        proc = subprocess.run([str(python), "-m", "pip", "install", *(["-q"] if quiet else []),
                               *step], capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"pip install {' '.join(step)} failed for peer {name!r}:\n"
                               f"{(proc.stdout + proc.stderr)[-3000:]}")

    pip_install([TORCH])
    pip_install(requirements)
    if name in DEPENDENCIES_AFTER:  # read once the distribution is installed
        pip_install(_declared_dependencies(python, DEPENDENCIES_AFTER[name]))
    marker.write_text(wanted)
    return python


def _declared_dependencies(python: Path, distribution: str) -> list[str]:
    """``distribution``'s requirements (no extras) as installed in ``python``'s venv."""
    code = ("import importlib.metadata as m, json; print(json.dumps([r for r in "
            f"(m.requires({distribution!r}) or []) if 'extra ==' not in r]))")
    proc = subprocess.run([str(python), "-c", code], capture_output=True, text=True,
                          check=True)
    return json.loads(proc.stdout)


if __name__ == "__main__":
    for peer in sys.argv[1:] or sorted(PEERS):
        print(ensure_peer(peer, quiet=False))
