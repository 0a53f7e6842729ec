"""Harmonic frequencies of one NH3 molecule, relaxed, from GFN1-xTB (tblite, the reference method
of the shipped data) and from shipped models (ase.vibrations, finite differences): the anchor
for the MD spectra's band positions. Prints a markdown table.

    python scripts/nh3_frequencies.py [--models legato allegro] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile

import numpy as np
from ase.build import molecule
from ase.optimize import BFGS
from ase.vibrations import Vibrations

from legato_jax.calculators import LegatoCalculator
from legato_jax.model.io import resolve_model

MODES = ("umbrella", "bend (2)", "symmetric stretch", "antisymmetric stretch (2)")


def frequencies(calc, box: float = 15.0) -> np.ndarray:
    """The six vibrational wavenumbers (cm^-1) of the relaxed molecule, in ascending order."""
    atoms = molecule("NH3")
    atoms.set_cell([box] * 3)
    atoms.center()
    atoms.pbc = True  # the models need a cell; 15 Å leaves no periodic image in range
    atoms.calc = calc
    BFGS(atoms, logfile=None).run(fmax=1e-3, steps=500)
    with tempfile.TemporaryDirectory() as tmp:
        vib = Vibrations(atoms, name=f"{tmp}/vib", delta=0.005, nfree=4)
        vib.run()
        energies = vib.get_energies()
    wavenumbers = np.real(energies) / 1.23981e-4  # eV -> cm^-1
    return np.sort(wavenumbers)[-6:]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="*", default=["legato", "allegro"])
    p.add_argument("--json")
    args = p.parse_args()
    from tblite.ase import TBLite

    rows = {"GFN1-xTB": frequencies(TBLite(method="GFN1-xTB", verbosity=0))}
    for name in args.models:
        potential, params, _ = resolve_model(name)
        rows[name] = frequencies(LegatoCalculator(potential, params))
    print("| method | umbrella | bend | bend | sym. stretch | antisym. stretch | antisym. stretch |\n|---|---|---|---|---|---|---|")
    for name, w in rows.items():
        print(f"| {name} | " + " | ".join(f"{x:.0f}" for x in w) + " |")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({k: v.tolist() for k, v in rows.items()}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
