"""Weak-scaling benchmark of decomposed MD: a fixed number of atoms per domain (the paper's 6,912
per GPU by default), P = 1, 2, 4, 8 domains, over the devices of this process (shard_map) or over
MPI ranks (one `mpirun -n P` per P). Per MD step: the measured step (a compiled chunk of two
blocks with a thermo evaluation after each, as `legato md` runs, over its steps); its parts timed alone, each
repeated inside one compiled loop as in a chunk: neighbour list (migration, ghost exchange and
edge search, times rebuilds per step), force (the model; the halo exchange inside it shown
apart: positions out, forces back), integration (velocity Verlet and the skin check's
all-reduce); "other" is the step less those parts and its share of the thermo evaluations
(negative when the fused step beats its parts timed alone). Also the ghost fraction and the weak-scaling efficiency t(1) / t(P)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from contextlib import nullcontext

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from legato_jax.cli.options import add_json_option, check_json_target, emit
from legato_jax.bench.timing import median_time
from legato_jax.cli.options import nonnegative_float, positive_float, positive_int

GRIDS = {1: (1, 1, 1), 2: (2, 1, 1), 4: (2, 2, 1), 8: (2, 2, 2), 16: (4, 2, 2), 27: (3, 3, 3), 64: (4, 4, 4)}


def measure(potential, params, n_per_domain: int, shape, comm=None, steps: int = 20, repeats: int = 3,
            skin: float = 0.5, profile: str | None = None) -> dict | None:
    """One row of the table for a `shape` grid (over `comm`'s ranks when given); None off the root."""
    from jax_md import simulate, space

    from legato_jax.data.ammonia import ammonia_box
    from legato_jax.data.graph import TypeMap
    from legato_jax.md.integrate import FS, Stage
    from legato_jax.md.systems import initial_momenta, masses
    from legato_jax.parallel.domains import DomainGrid
    from legato_jax.parallel.energy import domain_energy_fn
    from legato_jax.parallel.halo import forward
    from legato_jax.parallel.integrate import Rows, make_domain_chunk
    from legato_jax.parallel.lists import build_lists, estimate_capacities, migrate
    from legato_jax.parallel.layouts import MeshLayout, MPILayout
    from legato_jax.parallel.run import initial_rows

    atoms = ammonia_box(n_per_domain).repeat(shape)
    n, dtype = len(atoms), potential.dtype
    grid = DomainGrid.for_cell(shape, atoms.cell.array, potential.config.r_max + skin)
    layout = MeshLayout(grid) if comm is None else MPILayout(grid, comm)
    backend, cutoff = layout.backend, potential.config.r_max + skin
    species = TypeMap(tuple(potential.config.species)).indices(atoms.numbers)
    m = masses(atoms)
    p = np.asarray(initial_momenta(jax.random.PRNGKey(0), jnp.asarray(m, dtype), 200.0))
    caps = estimate_capacities(grid, n, potential.config.r_max, positions=np.mod(atoms.positions, grid.box))
    rows = layout.local(initial_rows(grid, atoms.positions, p, m, species, caps.owned, dtype))
    energy = domain_energy_fn(potential, params, backend, caps.model_edges)  # as in MD: the exact-edge buffer

    def lists_of(r: Rows):
        return build_lists(backend, grid, caps, cutoff, r.position, r.species, r.mask)

    def neighbour_list(r: Rows):
        moving = {"position": r.position, "momentum": r.momentum, "mass": r.mass, "species": r.species}
        moved, mask, _ = migrate(backend, grid, caps, moving, r.mask)
        return lists_of(r._replace(position=moved["position"], species=moved["species"], mask=mask)).senders

    def force(r: Rows, lists):
        return jax.grad(energy, has_aux=True)(r.position, lists, r.mask)[0]

    def halo(r: Rows, lists):
        X, back = jax.vjp(lambda x: forward(backend, x, lists.plan), r.position)
        return back(X)[0]  # positions out to the ghosts, a force-sized array back to the owners

    nve_force = jnp.zeros_like  # integration alone: a constant force stands in for the model

    def integrate(r: Rows, lists):
        _, apply = simulate.nve(lambda R, **kw: nve_force(R), space.free()[1], 1.0 * FS)
        md = apply(simulate.NVEState(r.position, r.momentum, nve_force(r.position), r.mass[:, None]))
        moved = jnp.max(jnp.where(r.mask, jnp.sum((md.position - r.position) ** 2, -1), 0.0))
        return md.position + backend.sum(moved)  # the skin check's all-reduce, as every step

    def thermo(r: Rows, lists):
        return jax.grad(energy, argnums=3, has_aux=True)(r.position, lists, r.mask, jnp.zeros((3, 3), r.position.dtype))[0]

    def ghosts(r: Rows, lists):
        return backend.sum(jnp.stack([jnp.sum(lists.valid) - jnp.sum(r.mask), jnp.sum(r.mask)]))

    def looped(part, *extra):
        """`loops` calls of part(rows, *extra) in one program, each fed by the last, so that the
        per-call time excludes dispatch (as inside an MD chunk)."""
        def fn(r: Rows, *args):
            def body(_, x):
                out = part(r._replace(position=x), *args)
                return x + 1e-9 * jnp.mean(out)
            return lax.fori_loop(0, loops, body, r.position)
        return layout.spmd(fn)

    spmd, loops = layout.spmd, 5
    lists = spmd(lists_of)(rows)
    ghost_total, owned_total = np.asarray(jax.device_get(spmd(ghosts)(rows, lists))).reshape(-1, 2)[0]
    timed = {"nl_s": (looped(neighbour_list), (rows,)), "force_s": (looped(force, lists), (rows, lists)),
             "halo_s": (looped(halo, lists), (rows, lists)), "thermo_s": (looped(thermo, lists), (rows, lists)),
             "integration_s": (looped(integrate, lists), (rows, lists))}
    row = {}
    for key, (fn, args) in timed.items():
        jax.block_until_ready(fn(*args))
        row[key] = median_time(lambda: fn(*args), repeats) / loops

    # a chunk as `legato md` runs it: two blocks of `steps` steps, one thermo evaluation after each
    stage = Stage("nve", 2 * steps, 1.0)
    chunk = layout.compile(make_domain_chunk(potential, params, grid, caps, skin, stage, backend, n, steps, 2))
    t0 = time.perf_counter()
    out = jax.block_until_ready(chunk(rows, None, jnp.int32(2)))  # compiles
    first = time.perf_counter() - t0
    with jax.profiler.trace(profile) if profile else nullcontext():
        two = median_time(lambda: chunk(rows, None, jnp.int32(2)), repeats)
    if bool(out[3]):
        raise RuntimeError(f"capacities overflowed in the {shape} benchmark run; rerun with fewer steps")
    rebuilds = int(np.asarray(out[2].rebuilds)[1])
    step = two / (2 * steps)
    nl = row["nl_s"] * rebuilds / steps
    halo_s = row["halo_s"]
    if not layout.root:
        return None
    if grid.size == 1:
        row.update(single_domain(potential, params, atoms, p, species, steps, repeats, skin))
    row.update({
        "domains": "x".join(map(str, shape)), "P": grid.size, "n_atoms": n, "atoms_per_domain": n // grid.size,
        "backend": layout.name, "step_s": step, "nl_per_step_s": nl, "halo_per_step_s": halo_s,
        "force_compute_s": row["force_s"] - halo_s, "other_s": step - row["force_s"] - nl - row["integration_s"] - row["thermo_s"] / (2 * steps),
        "rebuilds_per_step": rebuilds / steps, "ghost_fraction": float(ghost_total / owned_total),
        "ghosts_per_domain": float(ghost_total / grid.size), "itemsize": int(np.dtype(dtype).itemsize), "halo_bytes_per_step": float(
            2 * ghost_total / grid.size * 3 * np.dtype(dtype).itemsize), "first_chunk_s": first, "steps": steps,
    })
    return row


def single_domain(potential, params, atoms, momenta, species, steps: int, repeats: int, skin: float) -> dict:
    """The single-domain engine (`legato md` without --domains) on the same atoms and momenta, timed
    as the decomposed step is (a chunk of two blocks of `steps` steps, each ending in a thermo call,
    over its steps); and its list rebuild with every atom moved past half the skin."""
    from legato_jax.md.energy import model_energy
    from legato_jax.md.integrate import Stage, make_chunk, make_integrator, start_stage
    from legato_jax.md.systems import masses

    dtype = potential.dtype
    system = model_energy(potential, params, species, atoms.cell.array, skin=skin)
    R = system.wrap(jnp.asarray(atoms.positions, dtype))
    nbrs = system.neighbor_fn.allocate(R)
    stage = Stage("nve", 2 * steps, 1.0)
    init, apply = make_integrator(system, stage)
    mass = jnp.asarray(masses(atoms), dtype)[:, None]
    state = start_stage(init, jax.random.PRNGKey(0), R, mass, jnp.asarray(momenta, dtype), nbrs)
    chunk = make_chunk(system, stage, apply, steps, 2, False)
    update = jax.jit(lambda r, n: n.update(r).idx)
    moved = R + 0.6 * skin
    timed = {}
    for key, fn in (("two", lambda: chunk(state, nbrs, jnp.int32(2))), ("rebuild", lambda: update(moved, nbrs))):
        jax.block_until_ready(fn())
        timed[key] = median_time(fn, repeats)
    (_, nbrs_out), _ = chunk(state, nbrs, jnp.int32(2))
    if bool(nbrs_out.did_buffer_overflow):
        raise RuntimeError("the single-domain list overflowed in the benchmark run; rerun with fewer steps")
    return {"single_step_s": timed["two"] / (2 * steps),
            "single_rebuild_s": timed["rebuild"]}


def modelled_efficiency(compute_s: float, nl_s: float, rebuilds: float, n_per_domain: int, halo_bytes: float,
                        P: int, latency_s: float, bandwidth_Bps: float, messages: int = 12,
                        allreduces: int = 2) -> float:
    """Weak-scaling efficiency t(1) / t(P) at large P. Per step a domain computes for `compute_s`
    (model and integration), rebuilds its lists (`nl_s` each) `rebuilds` times per step at P = 1,
    sends `messages` halo messages (six stages, positions out and forces back) carrying
    `halo_bytes`, and waits on `allreduces` scalar all-reduces (the skin check and the thermostat's
    kinetic energy) of log2(P) latency-bound rounds each. Every domain rebuilds when any atom of
    the whole system has moved half a skin, and the largest displacement among N atoms grows like
    sqrt(ln N), so the rebuild rate grows by sqrt(ln(N P) / ln N). A single domain exchanges with
    its own images in memory: no network term at P = 1."""
    N = float(n_per_domain)
    t1 = compute_s + rebuilds * nl_s
    if P <= 1:
        return 1.0
    comm = messages * latency_s + halo_bytes / bandwidth_Bps + allreduces * np.log2(P) * latency_s
    rate = rebuilds * np.sqrt(np.log(N * P) / np.log(N))
    return t1 / (compute_s + rate * nl_s + comm)


def run(args: argparse.Namespace) -> dict:
    from legato_jax.model.io import resolve_model

    rows = []
    if args.backend == "mpi":
        for P in args.domains:
            rows.append(_mpi_row(args, P))
            print(format_row(rows[-1]), file=sys.stderr, flush=True)
    else:
        potential, params, _ = resolve_model(args.model)
        for P in args.domains:
            profile = f"{args.profile}/P{P}" if args.profile else None
            rows.append(measure(potential, params, args.atoms_per_domain, _grid(P), None, args.steps, args.repeats,
                                args.skin, profile))
            print(format_row(rows[-1]), file=sys.stderr, flush=True)
    base = rows[0]["step_s"] if rows and rows[0]["P"] == 1 else None
    for r in rows:
        r["efficiency"] = base / r["step_s"] if base else float("nan")
        r["same_cores_efficiency"] = r["P"] * base / r["step_s"] if base else float("nan")
    return {"model": args.model, "backend": args.backend, "device": str(jax.devices()[0]), "host_cores": os.cpu_count(),
            "rows": rows}


def _grid(P: int) -> tuple[int, int, int]:
    if P not in GRIDS:
        raise SystemExit(f"--domains {P}: choose from {sorted(GRIDS)}")
    return GRIDS[P]


def _mpi_row(args, P: int) -> dict:
    """One P under `mpirun -n P`, each rank one domain on its own single device."""
    mpirun = os.path.join(os.path.dirname(sys.executable), "mpirun")
    cmd = [mpirun if os.path.exists(mpirun) else "mpirun", "-n", str(P), sys.executable, "-m",
           "legato_jax.bench.parallel_scaling", "--one", str(P), "--model", args.model, "--atoms-per-domain",
           str(args.atoms_per_domain), "--steps", str(args.steps), "--repeats", str(args.repeats), "--skin",
           str(args.skin)] + (["--profile", args.profile] if args.profile else [])
    env = dict(os.environ, MPICH_INTERFACE_HOSTNAME="localhost")
    env.pop("XLA_FLAGS", None)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"mpirun -n {P} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _one(args) -> int:
    """Inside mpirun: measure this world size and print the row (rank 0)."""
    from mpi4py import MPI

    from legato_jax.model.io import resolve_model

    potential, params, _ = resolve_model(args.model)
    profile = f"{args.profile}/P{args.one}-rank{MPI.COMM_WORLD.Get_rank()}" if args.profile else None
    row = measure(potential, params, args.atoms_per_domain, _grid(args.one), MPI.COMM_WORLD, args.steps,
                  args.repeats, args.skin, profile)
    if row is not None:
        print(json.dumps(row), flush=True)
    return 0


def format_row(w: dict) -> str:
    ms = lambda s: f"{s * 1e3:.1f} ms"  # noqa: E731
    return (f"| {w['P']} ({w['domains']}) | {w['n_atoms']} | {ms(w['step_s'])} | {ms(w['nl_per_step_s'])} "
            f"| {ms(w['force_compute_s'])} | {ms(w['halo_per_step_s'])} | {ms(w['integration_s'])} | {ms(w['other_s'])} "
            f"| {w['rebuilds_per_step']:.2f} | {w['ghost_fraction']:.2f} | {w['halo_bytes_per_step'] / 1e3:.0f} kB "
            f"| {w.get('efficiency', float('nan')):.2f} | {w.get('same_cores_efficiency', float('nan')):.2f} |")


def format_report(r: dict) -> str:
    lines = [f"Weak scaling: {r['model']}, backend {r['backend']}, devices {r['device']} on a host with "
             f"{r['host_cores']} cores" + (" (every domain shares those cores: P above the core count measures "
                                           "oversubscription, not communication)" if "cpu" in r["device"].lower() else ""),
             "| P (grid) | atoms | MD step | neighbour list | force (model) | halo | integration | other | rebuilds/step "
             "| ghosts/owned | halo bytes/step/domain | efficiency t(1)/t(P) | same cores P t(1)/t(P) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    lines += [format_row(w) for w in r["rows"]]
    for w in r["rows"]:
        if "single_step_s" in w:
            lines.append(f"1x1x1 against the single-domain engine on the same {w['n_atoms']} atoms: MD step "
                         f"{w['step_s'] * 1e3:.1f} ms vs {w['single_step_s'] * 1e3:.1f} ms "
                         f"({w['step_s'] / w['single_step_s']:.2f}x); list rebuild {w['nl_s'] * 1e3:.1f} ms "
                         f"(migration, ghosts, binned search) vs {w['single_rebuild_s'] * 1e3:.1f} ms (jax-md)")
    return "\n".join(lines)


def format_model(r: dict, latency_us: float, bandwidth_GBs: float, Ps=(8, 64, 512, 1920)) -> str:
    """The efficiency model at large P from the largest measured P's per-step parts, with the halo
    bytes scaled to float32."""
    w = r["rows"][-1]
    nl_s, rebuilds = w["nl_s"], w["rebuilds_per_step"]
    compute = w["step_s"] - w["halo_per_step_s"] - rebuilds * nl_s
    halo = w["halo_bytes_per_step"] * 4 / w.get("itemsize", 4)
    rows = []
    for label, rb in ((f"measured rebuilds ({rebuilds:.2f}/step)", rebuilds), ("communication only (no rebuild cost)", 0.0)):
        cells = " | ".join(f"{modelled_efficiency(compute, nl_s, rb, w['atoms_per_domain'], halo, P, latency_us * 1e-6, bandwidth_GBs * 1e9):.3f}"
                           for P in Ps)
        rows.append(f"| {label} | {cells} |")
    return (f"Modelled efficiency at {w['atoms_per_domain']} atoms/domain: compute {compute * 1e3:.2f} ms/step, "
            f"list rebuild {nl_s * 1e3:.1f} ms, halo {halo / 1e3:.0f} kB/step in 12 messages (float32), "
            f"latency {latency_us} us, bandwidth {bandwidth_GBs} GB/s\n"
            f"| P | {' | '.join(map(str, Ps))} |\n|---|{'---|' * len(Ps)}\n" + "\n".join(rows))


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="allegro", help="model file, run directory or shipped model name")
    p.add_argument("--atoms-per-domain", type=positive_int, default=6912, help="weak-scaling load (the paper's per GPU)")
    p.add_argument("--domains", type=positive_int, nargs="+", default=[1, 2, 4, 8], help="values of P")
    p.add_argument("--backend", choices=["mesh", "mpi"], default="mesh",
                   help="mesh: devices of this process (shard_map); mpi: mpirun -n P, one domain per rank")
    p.add_argument("--steps", type=positive_int, default=20, help="timed MD steps per P (after a compile run as long)")
    p.add_argument("--repeats", type=positive_int, default=3, help="timed repetitions (the median is reported)")
    p.add_argument("--skin", type=nonnegative_float, default=0.5, help="neighbour-list skin, Å")
    p.add_argument("--profile", help="write jax.profiler traces here, one per P (and rank)")
    add_json_option(p, "the results")
    p.add_argument("--model-latency-us", type=nonnegative_float, default=2.0, help="network latency for the efficiency model")
    p.add_argument("--model-bandwidth-gbs", type=positive_float, default=12.5,
                   help="network bandwidth per domain for the efficiency model (GB/s)")
    p.add_argument("--one", type=int, help=argparse.SUPPRESS)


def main(args: argparse.Namespace) -> int:
    if args.one:
        return _one(args)
    check_json_target(args)
    if args.backend == "mesh":
        from legato_jax.parallel.devices import request_host_devices

        request_host_devices(max(args.domains))
    r = run(args)
    emit(args, r, format_report(r) + "\n" + format_model(r, args.model_latency_us, args.model_bandwidth_gbs))
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    add_arguments(parser)
    sys.exit(main(parser.parse_args()))
