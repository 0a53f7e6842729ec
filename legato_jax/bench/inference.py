"""Inference benchmark: energy + forces per call on liquid-ammonia boxes, against the PyTorch
nequip-allegro model when it is importable (an optional peer, never a dependency)."""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import os
import resource
import time
from contextlib import nullcontext

import jax
import jax.numpy as jnp

from legato_jax.cli.options import add_json_option, check_json_target, emit
from legato_jax.bench.timing import median_time
from legato_jax.data.ammonia import tiled_ammonia_packing
from legato_jax.data.batching import bucket
from legato_jax.data.graph import TypeMap, atoms_to_graph, collate
from legato_jax.data.neighbors import neighbor_list
from legato_jax.model.config import AllegroConfig, ModelStats
from legato_jax.model.potential import Potential, parameter_count
from legato_jax.cli.options import positive_int


def matmul_peak_gflops(n: int = 2048, repeats: int = 10) -> float:
    """float32 matmul rate of this machine through XLA (the practical peak for our kernels): the
    best of `repeats` timed calls, since the rate of one call varies by 1.5x between runs here."""
    a = jnp.ones((n, n), jnp.float32)
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    best = min(median_time(lambda: f(a), 1) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def bench_legato(atoms, config: AllegroConfig, repeats: int, profile: str | None = None) -> dict:
    type_map = TypeMap(config.species)
    nl_time = median_time(lambda: neighbor_list(atoms.positions, atoms.cell.array, atoms.pbc, config.r_max), repeats)
    fg = atoms_to_graph(atoms, type_map, config.r_max)
    n, n_edge = fg.n_node, fg.n_edge
    batch = collate([fg], bucket(n + 1, 8, 1.1), bucket(n_edge, 64, 1.1), 2, config.r_max)
    pot = Potential(config, ModelStats(avg_num_neighbors=n_edge / n, species_scale=(1.0,) * len(config.species),
                                       species_shift=(0.0,) * len(config.species)))
    params = pot.init(jax.random.PRNGKey(0), batch.graph)
    graph = jax.device_put(batch.graph)

    def energy_forces(p, g):
        out = pot.predict(p, g)
        return out.energy, out.forces

    t0 = time.perf_counter()
    compiled = jax.jit(energy_forces).lower(params, graph).compile()
    compile_s = time.perf_counter() - t0
    jax.block_until_ready(compiled(params, graph))
    ctx = jax.profiler.trace(os.path.join(profile, f"legato_{n}")) if profile else nullcontext()
    with ctx:
        call_s = median_time(lambda: compiled(params, graph), repeats)
    mem = compiled.memory_analysis()
    cost = compiled.cost_analysis()
    if config.edge_block is not None:  # XLA counts a scan's body once: count the unblocked model's FLOPs
        whole = Potential(dataclasses.replace(config, edge_block=None), pot.stats)
        whole_ef = lambda p, g: (lambda out: (out.energy, out.forces))(whole.predict(p, g))
        cost = jax.jit(whole_ef).lower(params, graph).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    flops = float(cost.get("flops", float("nan"))) if cost else float("nan")
    peak_bytes = None
    if mem is not None:
        peak_bytes = mem.temp_size_in_bytes + mem.argument_size_in_bytes + mem.output_size_in_bytes
    return {
        "atoms": n, "edges": int(n_edge), "params": parameter_count(params), "neighbour_list_s": nl_time,
        "compile_s": compile_s, "call_s": call_s, "us_per_atom": 1e6 * call_s / n, "gflop": flops / 1e9,
        "gflops_rate": flops / call_s / 1e9, "xla_peak_mib": None if peak_bytes is None else peak_bytes / 2**20,
    }


def nequip_available() -> bool:
    try:
        for name in ("allegro", "nequip", "torch"):
            importlib.import_module(name)
    except Exception:
        return False
    return True


def peer_mapping(config: AllegroConfig) -> dict:
    """Closest nequip-allegro (0.8 architecture) settings to our 0.2.0-style config."""
    return {
        "r_max": config.r_max, "l_max": config.l_max, "num_layers": config.num_layers,
        "num_tensor_features": config.num_channels, "num_scalar_features": config.latent_mlp[-1],
        "parity": config.parity != "so3", "num_bessels": config.num_bessel,
        "polynomial_cutoff_p": config.polynomial_p, "radial_chemical_embed_dim": config.two_body_mlp[0],
    }


def bench_nequip(atoms, config: AllegroConfig, repeats: int) -> dict:
    """Energy + forces per call of nequip-allegro's AllegroModel (eager, 1 process)."""
    import torch
    from allegro.model import AllegroModel
    from nequip.data import AtomicDataDict, from_ase
    from nequip.data.transforms import ChemicalSpeciesToAtomTypeMapper, NeighborListTransform
    from nequip.utils.global_state import set_global_state

    set_global_state()
    m = peer_mapping(config)
    model = AllegroModel(
        seed=0, model_dtype="float32", type_names=list(config.species), r_max=m["r_max"], l_max=m["l_max"],
        parity=m["parity"], num_layers=m["num_layers"], num_scalar_features=m["num_scalar_features"],
        num_tensor_features=m["num_tensor_features"],
        radial_chemical_embed={"_target_": "allegro.nn.TwoBodyBesselScalarEmbed", "num_bessels": m["num_bessels"],
                               "bessel_trainable": True, "polynomial_cutoff_p": m["polynomial_cutoff_p"]},
        radial_chemical_embed_dim=m["radial_chemical_embed_dim"], avg_num_neighbors=50.0,
    ).eval()
    data = from_ase(atoms)
    species = list(config.species)
    data = ChemicalSpeciesToAtomTypeMapper(
        model_type_names=species, chemical_species_to_atom_type_map={s: s for s in species}
    )(data)
    t0 = time.perf_counter()
    data = NeighborListTransform(r_max=config.r_max)(data)
    nl_s = time.perf_counter() - t0

    def call():
        d = {k: (v.clone() if torch.is_tensor(v) else v) for k, v in data.items()}
        out = model(d)
        return out[AtomicDataDict.FORCE_KEY]

    call()
    call_s = median_time(call, repeats)
    n = len(atoms)
    return {"atoms": n, "params": int(sum(p.numel() for p in model.parameters())), "neighbour_list_s": nl_s,
            "call_s": call_s, "us_per_atom": 1e6 * call_s / n, "torch_threads": torch.get_num_threads()}


def run(args: argparse.Namespace) -> dict:
    config = AllegroConfig.from_yaml(args.config)
    if args.edge_block is not None:
        config = dataclasses.replace(config, edge_block=args.edge_block)
    peak = matmul_peak_gflops()
    rows = []
    for n in args.sizes:
        atoms = tiled_ammonia_packing(n, seed=0)
        row = {"size": n, "legato": bench_legato(atoms, config, args.repeats, args.profile)}
        if args.peer and nequip_available():
            try:
                row["nequip"] = bench_nequip(atoms, config, args.repeats)
            except Exception as exc:  # the peer is optional; report why it did not run
                row["nequip_error"] = f"{type(exc).__name__}: {exc}"
        rows.append(row)
    peak = max(peak, matmul_peak_gflops())  # measured again after the rows: the best of both
    report = {
        "config": args.config, "device": str(jax.devices()[0]), "matmul_peak_gflops": peak, "rows": rows,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peer": "nequip-allegro" if nequip_available() else "not importable (pip install torch==2.13.0 nequip-allegro)",
        "peer_mapping": peer_mapping(config),
    }
    return report


def format_report(r: dict) -> str:
    lines = [
        f"inference benchmark, {r['config']}, device {r['device']}",
        f"float32 matmul peak (XLA, 2048^3, best of 20 calls before and after): {r['matmul_peak_gflops']:.1f} GFLOP/s; peer: {r['peer']}",
        f"{'atoms':>6} {'edges':>8} {'NL ms':>7} {'compile s':>9} {'E+F ms':>9} {'us/atom':>8} "
        f"{'GFLOP':>7} {'GFLOP/s':>8} {'% peak':>6} {'XLA MiB':>8} {'peer ms':>9} {'peer/us':>8}",
    ]
    for row in r["rows"]:
        L = row["legato"]
        peer = row.get("nequip")
        lines.append(
            f"{L['atoms']:6d} {L['edges']:8d} {1e3 * L['neighbour_list_s']:7.1f} {L['compile_s']:9.1f} "
            f"{1e3 * L['call_s']:9.1f} {L['us_per_atom']:8.1f} {L['gflop']:7.1f} {L['gflops_rate']:8.1f} "
            f"{100 * L['gflops_rate'] / r['matmul_peak_gflops']:6.1f} "
            f"{(L['xla_peak_mib'] or float('nan')):8.0f} "
            + (f"{1e3 * peer['call_s']:9.1f} {peer['call_s'] / L['call_s']:8.2f}" if peer else f"{'-':>9} {'-':>8}")
        )
        if "nequip_error" in row:
            lines.append(f"       peer failed: {row['nequip_error']}")
    lines.append(f"parameters: legato {r['rows'][0]['legato']['params']}"
                 + (f", nequip-allegro {r['rows'][0]['nequip']['params']}" if 'nequip' in r['rows'][0] else ""))
    lines.append(f"peer mapping (nequip-allegro 0.8 AllegroModel): {r['peer_mapping']}")
    lines.append(f"process peak RSS: {r['peak_rss_mib']:.0f} MiB")
    return "\n".join(lines)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default="allegro-l1", help="model YAML or shipped model preset")
    p.add_argument("--sizes", type=positive_int, nargs="+", default=[864, 6912], help="atoms per ammonia box")
    p.add_argument("--repeats", type=positive_int, default=5, help="timed repetitions (the median is reported)")
    p.add_argument("--edge-block", type=positive_int, default=None,
                   help="evaluate edges in blocks of this many (the model option edge_block)")
    p.add_argument("--no-peer", dest="peer", action="store_false", help="skip nequip-allegro even if importable")
    p.add_argument("--profile", default=None, help="write a JAX profiler trace to this folder")
    add_json_option(p, "the results")


def main(args: argparse.Namespace) -> int:
    check_json_target(args)
    report = run(args)
    emit(args, report, format_report(report))
    return 0
