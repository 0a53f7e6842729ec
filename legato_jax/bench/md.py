"""MD benchmark: the time of one MD step (integration, neighbour-list updates and the thermo
observers, in compiled chunks) against the bare energy + forces call of the same model on the
list and on a list of exactly the pairs within r_max (the floor), on liquid-ammonia boxes; ASE's
VelocityVerlet driving our calculator as the peer."""

from __future__ import annotations

import argparse
import time
from contextlib import nullcontext

import jax
import jax.numpy as jnp
import numpy as np

from legato_jax.cli.options import add_json_option, check_json_target, emit
from legato_jax.bench.timing import median_time
from legato_jax.data.ammonia import ammonia_box
from legato_jax.data.graph import TypeMap
from legato_jax.data.neighbors import neighbor_list
from legato_jax.md.energy import list_kind, model_energy
from legato_jax.md.integrate import Stage, StageRunner, make_integrator, start_stage
from legato_jax.md.systems import initial_momenta, masses
from legato_jax.model.io import resolve_model
from legato_jax.cli.options import nonnegative_float, nonnegative_int, positive_int


def bench_size(potential, params, n_atoms: int, steps: int, every: int, repeats: int, skin: float,
               peer_steps: int, profile: str | None) -> dict:
    atoms = ammonia_box(n_atoms)  # 64 atoms: narrower than 2 (r_max + skin), so the image-shift list
    species = TypeMap(tuple(potential.config.species)).indices(atoms.numbers)
    system = model_energy(potential, params, species, atoms.cell.array, skin=skin)
    dtype = potential.dtype
    R = system.wrap(jnp.asarray(atoms.positions, dtype))
    t0 = time.perf_counter()
    nbrs = system.neighbor_fn.allocate(R)
    allocate_s = time.perf_counter() - t0

    force = jax.jit(jax.value_and_grad(system.energy_fn))
    jax.block_until_ready(force(R, nbrs))
    force_s = median_time(lambda: force(R, nbrs), repeats)
    # the floor: the same call on a list of exactly the pairs within r_max (no skin, no spare room)
    bare = model_energy(potential, params, species, atoms.cell.array, skin=0.0, capacity_multiplier=1.0,
                        exact_edges=False)
    bare_nbrs = bare.neighbor_fn.allocate(R)
    bare_force = jax.jit(jax.value_and_grad(bare.energy_fn))
    jax.block_until_ready(bare_force(R, bare_nbrs))
    exact_force_s = median_time(lambda: bare_force(R, bare_nbrs), repeats)

    update = jax.jit(lambda r, n: n.update(r))
    moved = R + 0.6 * skin  # every atom past half the skin: a full rebuild
    jax.block_until_ready(update(moved, nbrs).idx)
    rebuild_s = median_time(lambda: update(moved, nbrs).idx, repeats)
    jax.block_until_ready(update(R, nbrs).idx)
    check_s = median_time(lambda: update(R, nbrs).idx, repeats)

    stage = Stage("nose-hoover", steps, 1.0, 200.0, 100.0)
    init, apply = make_integrator(system, stage)
    mass = jnp.asarray(masses(atoms), dtype)[:, None]
    state = start_stage(init, jax.random.PRNGKey(0), R, mass,
                        initial_momenta(jax.random.PRNGKey(1), mass, 200.0), nbrs)
    runner = StageRunner(system, stage, apply, every=every, chunk_steps=steps)
    t0 = time.perf_counter()
    for _, state, nbrs, obs in runner.chunks(state, nbrs, steps):  # warm-up chunk: compiles
        pass
    compile_s = time.perf_counter() - t0
    warm_compiles = runner.compiles
    ctx = jax.profiler.trace(profile) if profile else nullcontext()
    rebuilds = 0
    with ctx:
        t0 = time.perf_counter()
        for _, state, nbrs, obs in runner.chunks(state, nbrs, steps):
            rebuilds += int(obs.rebuilds.sum())
        jax.block_until_ready(state.position)
        md_s = (time.perf_counter() - t0) / steps
    exact = len(neighbor_list(np.asarray(state.position, float), atoms.cell.array, True, potential.config.r_max)[0])
    row = {
        "n_atoms": n_atoms, "edges": int(np.sum(np.asarray(nbrs.idx[0]) < n_atoms)), "capacity": int(nbrs.idx.shape[1]),
        "exact_edges": exact, "model_edges": system.model_edges(nbrs), "exact_force_s": exact_force_s,
        "md_over_exact_force": md_s / exact_force_s, "list": list_kind(nbrs), "cell_list": getattr(nbrs, "cell_list_fn", None) is not None,
        "allocate_s": allocate_s, "force_s": force_s,
        "md_step_s": md_s, "overhead": md_s / force_s - 1.0, "atom_steps_per_s": n_atoms / md_s,
        "rebuilds_per_100_steps": 100.0 * rebuilds / steps, "rebuild_s": rebuild_s, "check_s": check_s,
        "first_chunk_s": compile_s, "recompiles_after_warmup": runner.compiles - warm_compiles,
        "reallocations": runner.reallocations, "steps": steps, "every": every,
    }
    if peer_steps:
        row["ase_step_s"] = _ase_step(potential, params, atoms, peer_steps)
    return row


def _ase_step(potential, params, atoms, steps: int) -> float:
    from ase import units
    from ase.md.verlet import VelocityVerlet

    from legato_jax.calculators import LegatoCalculator

    a = atoms.copy()
    a.calc = LegatoCalculator(potential, params)
    dyn = VelocityVerlet(a, timestep=1.0 * units.fs)
    dyn.run(1)  # compile
    t0 = time.perf_counter()
    dyn.run(steps)
    return (time.perf_counter() - t0) / steps


def run(args: argparse.Namespace) -> dict:
    potential, params, _ = resolve_model(args.model)
    rows = []
    for n in args.sizes:
        profile = f"{args.profile}/md_{n}" if args.profile else None
        steps = args.steps if n <= 2000 else args.steps_large
        rows.append(bench_size(potential, params, n, steps, args.every, args.repeats, args.skin,
                               args.peer_steps if n <= 2000 else 0, profile))
    return {"model": args.model, "r_max": potential.config.r_max, "device": str(jax.devices()[0]),
            "skin": args.skin, "rows": rows}


def format_report(r: dict) -> str:
    lines = [f"MD benchmark: {r['model']} (r_max {r['r_max']} Å, skin {r['skin']} Å) on {r['device']}; "
             "Nose-Hoover NVT, dt 1 fs, thermo every {} steps".format(r["rows"][0]["every"] if r["rows"] else "-"),
             "| atoms | list | edges/atom (list) | edges/atom (r_max) | edge slots/atom (model) | force call on exact "
             "edges | MD step | MD / exact call | atom-steps/s | rebuilds /100 steps | rebuild | skin check | recompiles "
             "| ASE VV step | MD vs ASE |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for w in r["rows"]:
        ase = w.get("ase_step_s")
        ase_cells = f"{ase * 1e3:.1f} ms | {ase / w['md_step_s']:.2f}x" if ase else "- | -"

        lines.append(
            f"| {w['n_atoms']} | {w['list']} | {w['edges'] / w['n_atoms']:.1f} | {w['exact_edges'] / w['n_atoms']:.1f} "
            f"| {w['model_edges'] / w['n_atoms']:.1f} | {w['exact_force_s'] * 1e3:.1f} ms "
            f"| {w['md_step_s'] * 1e3:.1f} ms | {w['md_over_exact_force']:.2f}x | {w['atom_steps_per_s']:.3g} "
            f"| {w['rebuilds_per_100_steps']:.1f} | {w['rebuild_s'] * 1e3:.1f} ms | {w['check_s'] * 1e3:.2f} ms "
            f"| {w['recompiles_after_warmup']} | {ase_cells} |")
    return "\n".join(lines)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="allegro", help="model file, run directory or shipped model name")
    p.add_argument("--sizes", type=positive_int, nargs="+", default=[64, 1728], help="atoms per ammonia box")
    p.add_argument("--steps", type=positive_int, default=100, help="timed MD steps (after a warm-up chunk as long)")
    p.add_argument("--steps-large", type=positive_int, default=20, help="timed steps for boxes above 2,000 atoms")
    p.add_argument("--every", type=positive_int, default=10, help="thermo interval (the default of `legato md`)")
    p.add_argument("--skin", type=nonnegative_float, default=0.5, help="neighbour-list skin, Å")
    p.add_argument("--repeats", type=positive_int, default=5, help="timed repetitions (the median is reported)")
    p.add_argument("--peer-steps", type=nonnegative_int, default=10, help="ASE VelocityVerlet steps (0: skip the peer)")
    p.add_argument("--profile", help="write jax.profiler traces here")
    add_json_option(p, "the results")


def main(args: argparse.Namespace) -> int:
    check_json_target(args)
    r = run(args)
    emit(args, r, format_report(r))
    return 0
