"""Path-integral MD against exact quantum results: the centroid-virial kinetic energy of harmonic
oscillators and of a harmonic crystal (periodic simple-cubic lattice, nearest-neighbour springs)
against sum_k (hbar w_k / 4) coth(hbar w_k / 2 kT), as P grows. Prints a markdown table.

    python scripts/pimd_harmonic.py [--beads 1 2 4 8 16 32] [--blocks 4000] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)

from legato_jax.md.integrate import FS, KB  # noqa: E402
from legato_jax.md.ring_polymer import HBAR, estimators, exact_harmonic_kinetic, ring_polymer_langevin  # noqa: E402


def crystal_matrix(cells: int, k_spring: float) -> np.ndarray:
    """Force constants (3n, 3n) of a periodic simple-cubic lattice with central springs between
    nearest neighbours: each bond stiff along itself, so every direction couples along a line."""
    n = cells**3
    index = np.arange(n).reshape(cells, cells, cells)
    K = np.zeros((3 * n, 3 * n))
    for axis in range(3):
        nb = np.roll(index, -1, axis=axis).ravel()
        for i, j in zip(index.ravel(), nb):
            a, b = 3 * i + axis, 3 * j + axis
            K[a, a] += k_spring
            K[b, b] += k_spring
            K[a, b] -= k_spring
            K[b, a] -= k_spring
    return K


def run(K: np.ndarray, m: float, kT: float, P: int, blocks: int, seed: int = 0, dt_fs: float = 1.0) -> tuple[float, float]:
    """Mean and standard error of the centroid-virial kinetic energy (eV) of the system x^T K x / 2."""
    n = K.shape[0] // 3
    Kj = jnp.asarray(K)
    force = lambda R, **kw: -(R.reshape(R.shape[0], -1) @ Kj).reshape(R.shape)  # noqa: E731
    init, apply = ring_polymer_langevin(force, dt_fs * FS, kT, P, tau=20 * FS, thermostat="pile-l")
    state = init(jax.random.PRNGKey(seed), jnp.zeros((n, 3)), jnp.full((n,), m))

    @jax.jit
    def go(s):
        def block(s, _):
            s = jax.lax.fori_loop(0, 10, lambda i, s: apply(s), s)
            return s, estimators(s, jnp.zeros(P), kT).kinetic_virial
        return jax.lax.scan(block, s, None, length=blocks)[1]

    kv = np.asarray(go(state))[blocks // 10:]
    groups = kv[: len(kv) // 10 * 10].reshape(10, -1).mean(axis=1)
    return float(kv.mean()), float(groups.std(ddof=1) / np.sqrt(10))


def exact(K: np.ndarray, m: float, kT: float) -> float:
    """Quantum kinetic energy: (hbar w / 4) coth(hbar w / 2 kT) per mode, kT / 2 per zero mode."""
    w2 = np.linalg.eigvalsh(K / m)
    w = np.sqrt(np.clip(w2, 0, None))
    zero = w < 1e-8 * w.max()
    return float(0.5 * kT * zero.sum() + sum(exact_harmonic_kinetic(x, kT) for x in w[~zero]))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--beads", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64])
    p.add_argument("--blocks", type=int, default=4000, help="blocks of 10 steps (1 fs) per run")
    p.add_argument("--json")
    args = p.parse_args()
    kT, m = KB * 300.0, 1.0
    omega = 4 * kT / HBAR  # beta hbar w = 4
    crystal = crystal_matrix(3, m * (4 * kT / HBAR) ** 2)
    w_max = np.sqrt(np.linalg.eigvalsh(crystal / m).max())
    stretch = 24 * kT / HBAR  # the N-H stretch (3,340 cm^-1) at 200 K, as at 300 K here
    systems = {"64 oscillators, beta hbar w = 4": np.kron(np.eye(64 * 3), m * omega**2),
               f"harmonic crystal 3x3x3, beta hbar w_max = {HBAR * w_max / kT:.1f}": crystal,
               "64 oscillators, beta hbar w = 24 (N-H stretch at 200 K), dt 0.25 fs": np.kron(np.eye(64 * 3), m * stretch**2)}
    rows = []
    print("| system | P | K_cv / K_exact | ± | wall s |\n|---|---|---|---|---|")
    for name, K in systems.items():
        ref = exact(K, m, kT)
        for P in args.beads:
            t0 = time.perf_counter()
            mean, err = run(K, m, kT, P, args.blocks, dt_fs=0.25 if "24" in name else 1.0)
            rows.append({"system": name, "P": P, "ratio": mean / ref, "err": err / ref, "exact_eV": ref})
            print(f"| {name} | {P} | {mean / ref:.4f} | {err / ref:.4f} | {time.perf_counter() - t0:.1f} |", flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"temperature_K": 300.0, "dt_fs": "1.0 (0.25 for beta hbar w = 24)", "blocks": args.blocks,
                       "rows": rows}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
