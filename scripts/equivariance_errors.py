"""Measured symmetry errors of a model: energy and forces under random rotations and inversion,
in float32 and float64, on a liquid-ammonia box. Prints a table (used for the model notes)."""

import argparse

import jax
import numpy as np
from scipy.spatial.transform import Rotation

from legato_jax.data.ammonia import tiled_ammonia_packing
from legato_jax.data.batching import bucket
from legato_jax.data.graph import TypeMap, atoms_to_graph, collate
from legato_jax.model.config import AllegroConfig, ModelStats
from legato_jax.model.potential import Potential


def predict(pot, params, atoms):
    fg = atoms_to_graph(atoms, TypeMap(pot.config.species), pot.config.r_max)
    n = fg.n_node
    g = collate([fg], bucket(n + 1, 8, 1.1), bucket(fg.n_edge, 64, 1.1), 2, pot.config.r_max, dtype=np.float64).graph
    out = jax.jit(pot.predict)(params, g)
    return float(out.energy[0]), np.asarray(out.forces[:n], dtype=np.float64)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--config", default="configs/model/allegro-l1.yaml")
    p.add_argument("--atoms", type=int, default=64)
    p.add_argument("--rotations", type=int, default=5)
    args = p.parse_args()
    atoms = tiled_ammonia_packing(args.atoms, seed=1)
    print(f"{'dtype':>8} {'max |dE|/|E|':>14} {'max |dF|/max|F|':>16}  ({args.rotations} rotations + inversion, {args.atoms} atoms)")
    for dtype in ("float32", "float64"):
        cfg = AllegroConfig.from_dict({**AllegroConfig.from_yaml(args.config).to_dict(), "dtype": dtype})
        with jax.enable_x64(dtype == "float64"):
            n = len(atoms)
            pot = Potential(cfg, ModelStats(avg_num_neighbors=50.0, species_scale=(1.0, 1.0), species_shift=(0.0, 0.0)))
            fg = atoms_to_graph(atoms, TypeMap(cfg.species), cfg.r_max)
            params = pot.init(jax.random.PRNGKey(0), collate([fg], n + 1, fg.n_edge, 2, cfg.r_max).graph)
            e0, f0 = predict(pot, params, atoms)
            de = df = 0.0
            for k in range(args.rotations + 1):
                R = -np.eye(3) if k == args.rotations else Rotation.random(random_state=k).as_matrix()
                rot = atoms.copy()
                rot.positions = atoms.positions @ R.T
                rot.cell = atoms.cell.array @ R.T if k < args.rotations else atoms.cell.array
                e1, f1 = predict(pot, params, rot)
                de = max(de, abs(e1 - e0) / abs(e0))
                df = max(df, np.abs(f1 - f0 @ R.T).max() / np.abs(f0).max())
        print(f"{dtype:>8} {de:14.2e} {df:16.2e}")


if __name__ == "__main__":
    main()
