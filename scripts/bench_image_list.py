"""Time per rebuild (jitted, after warm-up) of the exact image neighbour list (dense and binned
searches; "<- auto" marks the one `method="auto"` picks) against jax-md's multi-image list (dense,
needs wrapped positions) and its minimum-image cell list (valid in cubes >= 2 cutoffs wide), on the
shipped 64-atom ammonia cell replicated; each edge set is checked against ASE's `neighbor_list`
(same (i, j, S) triples, or the same count for jax-md's cell list, which has no shifts)."""

import argparse
import contextlib
import time

import jax
import jax.numpy as jnp
import numpy as np
from ase.io import read
from ase.neighborlist import neighbor_list
from jax_md import custom_partition, partition, space

from legato_jax.data.ammonia import AMMONIA_CELL
from legato_jax.md.image_list import image_neighbor_list


def timed(fn, *args, repeats: int) -> str:
    """'min / median' ms of fn(*args) after one warm-up call (min: the cost on a shared CPU)."""
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return f"{1e3 * min(times):.2f} / {1e3 * float(np.median(times)):.2f}"


def triples(receivers, senders, shifts, n: int) -> set:
    valid = np.asarray(receivers) < n
    s = np.rint(np.asarray(shifts)[valid]).astype(int)
    return set(zip(np.asarray(receivers)[valid], np.asarray(senders)[valid], map(tuple, s)))


def bench_cell(reps: tuple[int, int, int], base, r_max: float, skin: float, args) -> list[tuple]:
    atoms, name = base.repeat(reps), "x".join(map(str, reps))
    cutoff = r_max + skin
    n, cell = len(atoms), atoms.cell.array
    dtype = jnp.float64 if args.x64 else jnp.float32
    R0 = jnp.asarray(atoms.positions, dtype)
    moved = R0 + skin  # every atom moved beyond skin / 2: each update rebuilds
    i, j, S = neighbor_list("ijS", atoms, cutoff)
    ase = set(zip(i, j, map(tuple, S)))
    rows = []
    methods = ["dense", "binned"] + (["jax-md multi-image"] if n * n * 27 <= args.max_dense else [])
    methods += ["jax-md cell list"] if len(set(reps)) == 1 and reps[0] >= 3 else []
    auto = image_neighbor_list(cell, cutoff, skin, n).method
    for method in methods:
        if method in ("dense", "binned"):
            fns = image_neighbor_list(cell, cutoff, skin, n, method=method)
            nbrs = fns.allocate(R0)
            ms = timed(fns.update, moved, nbrs, repeats=args.repeats)
            ok = triples(nbrs.receivers, nbrs.senders, nbrs.shifts, n) == ase
            label = method + (" <- auto" if method == auto else "")
            rows.append((name, n, label, ms, int(nbrs.count), nbrs.capacity, ok, bool(nbrs.overflow)))
        elif method == "jax-md multi-image":
            fns = custom_partition.neighbor_list_multi_image(
                None, jnp.asarray(cell.T, dtype), r_max, dr_threshold=skin, capacity_multiplier=1.25,
                fractional_coordinates=False, format=partition.Sparse)
            nbrs = fns.allocate(R0)
            update = jax.jit(fns.update)
            ms = timed(update, moved, nbrs, repeats=args.repeats)
            rec, snd = nbrs.idx
            ok = triples(rec, snd, nbrs.shifts, n) == ase
            rows.append((name, n, method, ms, int(jnp.sum(rec < n)), nbrs.max_occupancy, ok,
                         bool(nbrs.did_buffer_overflow)))
        else:
            box = jnp.asarray(np.diag(cell), dtype)
            displacement, _ = space.periodic(box)
            fns = partition.neighbor_list(displacement, box, r_max, dr_threshold=skin, capacity_multiplier=1.25,
                                          fractional_coordinates=False, format=partition.Sparse)
            nbrs = fns.allocate(R0)
            update = jax.jit(fns.update)
            ms = timed(update, jnp.mod(moved, box), nbrs, repeats=args.repeats)
            count = int(jnp.sum(nbrs.idx[0] < n))
            rows.append((name, n, method, ms, count, nbrs.idx.shape[1], count == len(ase),
                         bool(nbrs.did_buffer_overflow)))
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--r-max", type=float, default=5.5)
    p.add_argument("--skin", type=float, default=0.5)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--x64", action="store_true", help="float64 positions (default float32, as MD)")
    p.add_argument("--max-dense", type=float, default=3e7, help="skip jax-md's dense list beyond this many candidates")
    p.add_argument("--cells", nargs="+", default=["1x1x1", "3x3x3", "1x1x27", "4x4x4", "6x6x6"],
                   help="replications of the 64-atom ammonia cell (8.73 Å cube)")
    p.add_argument("--profile", metavar="DIR", help="write a JAX trace of the runs to DIR")
    args = p.parse_args()
    jax.config.update("jax_enable_x64", args.x64)
    base = read(AMMONIA_CELL, 0)
    print(f"cutoff {args.r_max + args.skin} Å (r_max {args.r_max} + skin {args.skin}), "
          f"{'float64' if args.x64 else 'float32'}, {jax.devices()[0].platform}")
    print("| cell | N | method | ms per rebuild (min / median) | edges found | capacity | equals ASE | overflow |")
    print("|---|---|---|---|---|---|---|---|")
    with jax.profiler.trace(args.profile) if args.profile else contextlib.nullcontext():
        for cell in args.cells:
            reps = tuple(int(k) for k in cell.split("x"))
            for row in bench_cell(reps, base, args.r_max, args.skin, args):
                print("| " + " | ".join(map(str, row)) + " |")


if __name__ == "__main__":
    main()
