"""How local are the reference forces? For atoms of a few frames, displace every atom farther
than r_c (minimum image) by Gaussian noise and report the mean change of the force on the atom,
per species and cutoff: the error floor of any model with that cutoff, per 0.1 Å of motion."""

import argparse

import numpy as np
from tblite.ase import TBLite

from legato_jax.data.io import read_images


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data", default="data/ammonia.extxyz.xz")
    p.add_argument("--frames", default="0:1500:300", help="ASE index of the frames to probe")
    p.add_argument("--cutoffs", type=float, nargs="+", default=[4.5, 5.0, 5.5, 6.0])
    p.add_argument("--atoms-per-frame", type=int, default=4)
    p.add_argument("--noise", type=float, default=0.1, help="Å, std of the displacement of far atoms")
    p.add_argument("--max-frames", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    frames = read_images(args.data, args.frames)[: args.max_frames]
    rng = np.random.default_rng(args.seed)
    print("| r_c (Å) | species | atoms probed | mean far atoms | mean |ΔF| (meV/Å) |")
    print("|---|---|---|---|---|")
    for rc in args.cutoffs:
        change = {}
        for frame in frames:
            atoms = frame.copy()
            atoms.calc = TBLite(method="GFN1-xTB", verbosity=0)
            f0 = atoms.get_forces()
            for i in rng.choice(len(atoms), args.atoms_per_frame, replace=False):
                far = atoms.get_distances(i, range(len(atoms)), mic=True) > rc
                moved = atoms.copy()
                moved.calc = TBLite(method="GFN1-xTB", verbosity=0)
                moved.positions[far] += rng.normal(0.0, args.noise, (far.sum(), 3))
                df = 1000 * np.linalg.norm(moved.get_forces()[i] - f0[i])
                change.setdefault(atoms.get_chemical_symbols()[i], []).append((df, far.sum()))
        for sym, vals in sorted(change.items()):
            v = np.array(vals)
            print(f"| {rc} | {sym} | {len(v)} | {v[:, 1].mean():.1f} | {v[:, 0].mean():.1f} |")


if __name__ == "__main__":
    main()
