"""Predict frames with a trained mace-torch model (run inside the mace peer environment).

Usage: python mace_predict.py MODEL IN.xyz OUT.xyz [--dtype float64]

Writes OUT.xyz with energy, forces and (for fully periodic frames) stress of the model in
each frame's single-point calculator, in the order of IN.xyz.
"""

import argparse

import ase.io
import numpy as np
from ase.calculators.singlepoint import SinglePointCalculator
from mace.calculators import MACECalculator


def main() -> None:
    """Predict and write."""
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("inp")
    parser.add_argument("out")
    parser.add_argument("--dtype", default="float64")
    args = parser.parse_args()
    calc = MACECalculator(model_paths=args.model, device="cpu", default_dtype=args.dtype)
    out = []
    for atoms in ase.io.read(args.inp, ":"):
        atoms = atoms.copy()
        atoms.calc = calc
        results = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces()}
        if np.all(atoms.pbc):
            results["stress"] = atoms.get_stress()
        atoms.calc = SinglePointCalculator(atoms, **results)
        out.append(atoms)
    ase.io.write(args.out, out, format="extxyz")


if __name__ == "__main__":
    main()
