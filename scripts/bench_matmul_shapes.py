"""The float32 XLA matmul rate of the shapes an Allegro layer runs, against the machine's square
peak in the same run: (edges, K) @ (K, N) for the per-edge MLP and channel-mixing widths of the
shipped and paper models. It says how far a kernel made only of these matmuls could get on this
machine (`legato bench inference` reports the whole model's % of peak)."""

import argparse

import jax
import jax.numpy as jnp

from legato_jax.bench.inference import matmul_peak_gflops
from legato_jax.bench.timing import median_time

# (K, N): two-body MLP [32, 64, 128] from 8 Bessel + 2 x 2 one-hot inputs, latent and readout
# widths 32-192 (the paper model's latent input is 128 + 64 scalars = 192), channel mixing 32-64
SHAPES = ((12, 32), (32, 64), (64, 128), (128, 128), (192, 128), (128, 64), (96, 32), (128, 32))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--edges", type=int, default=74_048, help="rows (default: about the edges of the 864-atom box, r_max 6 Å)")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    peak = matmul_peak_gflops(repeats=10)
    print(f"float32 matmul peak (2048^3, best of 10): {peak:.0f} GFLOP/s; {jax.devices()[0].device_kind}")
    print("| shape | GFLOP/s | % of peak |\n|---|---|---|")
    for k, n in SHAPES:
        a, w = jnp.ones((args.edges, k), jnp.float32), jnp.ones((k, n), jnp.float32)
        f = jax.jit(lambda a, w: a @ w)
        f(a, w).block_until_ready()
        t = min(median_time(lambda: f(a, w), args.repeats) for _ in range(3))
        rate = 2 * args.edges * k * n / t / 1e9
        print(f"| ({args.edges:,} x {k}) @ ({k} x {n}) | {rate:.0f} | {100 * rate / peak:.0f} |")


if __name__ == "__main__":
    main()
