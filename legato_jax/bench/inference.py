"""Inference benchmark: energy + forces per call on liquid-ammonia boxes, against the PyTorch
nequip-allegro model when it is importable (an optional peer, never a dependency)."""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import os
import resource
import tempfile
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
from legato_jax.bench.peer_train import peer_model


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


def peer_defaults_config(config: AllegroConfig) -> AllegroConfig:
    """Our config closest to nequip-allegro 0.8's AllegroModel defaults (2 layers, 64 scalar and
    16 tensor features, MLPs of one hidden layer: 64 wide, readout 32), keeping r_max, l_max,
    parity and the radial basis of `config` (the peer has no defaults for those). Our readout
    stays linear (Allegro 0.2.0's); the peer's default one has a SiLU."""
    return dataclasses.replace(config, num_layers=2, num_channels=16, two_body_mlp=(64, 64, 64), latent_mlp=(64, 64),
                               edge_energy_mlp=(32,), edge_block=None)


_FIXED_STATS = {"avg_num_neighbors": 50.0, "per_type_energy_shifts": 0.0, "per_type_energy_scales": 1.0}


def peer_kwargs(config: AllegroConfig) -> dict:
    """AllegroModel keyword arguments of the peer closest to `config` (the mapping `legato bench
    train --peer` trains with), with fixed statistics in place of the data's."""
    return {**{k: v for k, v in peer_model(config, seed=0).items() if k != "_target_"}, **_FIXED_STATS}


def peer_default_kwargs(config: AllegroConfig) -> dict:
    """The peer at its own defaults: only what AllegroModel requires (cutoff, l_max, species, radial
    basis) taken from `config`."""
    keep = ("seed", "model_dtype", "type_names", "r_max", "l_max", "parity", "radial_chemical_embed")
    return {**{k: v for k, v in peer_kwargs(config).items() if k in keep}, **_FIXED_STATS}


class NequipPeer:
    """nequip-allegro 0.8's AllegroModel for energy + forces, eager and as an AOTInductor export
    (nequip's own export path, `nequip-compile --mode aotinductor` in-process, with Inductor's C++
    kernels on one thread: on 2-core CPUs its default opens an OpenMP region per small kernel)."""

    def __init__(self, config: AllegroConfig, kwargs: dict, workdir: str):
        import torch
        from allegro.model import AllegroModel
        from nequip.utils.global_state import set_global_state

        set_global_state()
        self.torch, self.config, self.workdir = torch, config, workdir
        os.makedirs(workdir, exist_ok=True)
        self.model = AllegroModel(**kwargs).eval()
        self.params = int(sum(p.numel() for p in self.model.parameters()))
        self.aoti = None

    def data(self, atoms) -> tuple[dict, float]:
        from nequip.data import from_ase
        from nequip.data.transforms import ChemicalSpeciesToAtomTypeMapper, NeighborListTransform

        species = list(self.config.species)
        data = ChemicalSpeciesToAtomTypeMapper(
            model_type_names=species, chemical_species_to_atom_type_map={s: s for s in species})(from_ase(atoms))
        t0 = time.perf_counter()
        data = NeighborListTransform(r_max=self.config.r_max)(data)
        return data, time.perf_counter() - t0

    def eager(self, data: dict):
        from nequip.data import AtomicDataDict

        d = {k: (v.clone() if self.torch.is_tensor(v) else v) for k, v in data.items()}
        return self.model(d)[AtomicDataDict.FORCE_KEY]

    def export(self, data: dict) -> float:
        """Export once with dynamic atom and edge counts (every size reuses it); returns seconds."""
        from nequip.data import AtomicDataDict
        from nequip.nn.compile import DictInputOutputWrapper
        from nequip.scripts._compile_utils import (PAIR_NEQUIP_INPUTS, single_frame_batch_map_settings,
                                                   single_frame_data_settings)
        from nequip.utils.aot import aot_export_model

        self.torch._inductor.config.cpp.threads = 1
        dim = self.torch.export.Dim
        batch_map = single_frame_batch_map_settings(
            {"graph": dim("num_frames", min=2), "node": dim("num_nodes", min=2), "edge": dim("num_edges", min=2)})
        self.fields = (PAIR_NEQUIP_INPUTS, [AtomicDataDict.TOTAL_ENERGY_KEY, AtomicDataDict.FORCE_KEY])
        path = os.path.join(self.workdir, "peer.nequip.pt2")
        t0 = time.perf_counter()
        aot_export_model(model=self.model, device="cpu", input_fields=self.fields[0], output_fields=self.fields[1],
                         data=single_frame_data_settings(dict(data)), batch_map=batch_map, output_path=path)
        seconds = time.perf_counter() - t0
        self.aoti = DictInputOutputWrapper(self.torch._inductor.aoti_load_package(path), *self.fields)
        return seconds

    def compiled(self, data: dict):
        from nequip.data import AtomicDataDict

        return self.aoti({k: data[k] for k in self.fields[0]})[AtomicDataDict.FORCE_KEY]

    def flops(self, data: dict) -> float:
        """FLOPs of one eager energy + forces call as torch's profiler counts them (matmuls and
        elementwise products and sums)."""
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU], with_flops=True) as prof:
            self.eager(data)
        return float(sum(e.flops for e in prof.key_averages()))


def bench_nequip(peer: NequipPeer, atoms, repeats: int, aoti: bool) -> dict:
    """Energy + forces per call of the peer, eager and (with `aoti`) exported."""
    data, nl_s = peer.data(atoms)
    peer.eager(data)
    row = {"atoms": len(atoms), "params": peer.params, "neighbour_list_s": nl_s,
           "call_s": median_time(lambda: peer.eager(data), repeats), "gflop": peer.flops(data) / 1e9,
           "torch_threads": peer.torch.get_num_threads()}
    if aoti:
        if peer.aoti is None:
            row["aoti_export_s"] = peer.export(data)
        forces = peer.compiled(data)
        row["aoti_force_diff"] = float((forces - peer.eager(data)).abs().max())
        row["aoti_call_s"] = median_time(lambda: peer.compiled(data), repeats)
    return row


def bench_model(config: AllegroConfig, kwargs: dict, args: argparse.Namespace, workdir: str) -> list[dict]:
    """Ours and (when importable and asked for) the peer at every size, one model."""
    peer, peer_error = None, None
    if args.peer and nequip_available():
        try:
            peer = NequipPeer(config, kwargs, workdir)
        except Exception as exc:  # the peer is optional; report why it did not run
            peer_error = f"{type(exc).__name__}: {exc}"
    rows = []
    for n in args.sizes:
        atoms = tiled_ammonia_packing(n, seed=0)
        row = {"size": n, "legato": bench_legato(atoms, config, args.repeats, args.profile)}
        if peer is not None:
            try:
                row["nequip"] = bench_nequip(peer, atoms, args.repeats, args.aoti)
            except Exception as exc:
                row["nequip_error"] = f"{type(exc).__name__}: {exc}"
        elif peer_error:
            row["nequip_error"] = peer_error
        rows.append(row)
    return rows


def run(args: argparse.Namespace) -> dict:
    config = AllegroConfig.from_yaml(args.config)
    if args.edge_block is not None:
        config = dataclasses.replace(config, edge_block=args.edge_block)
    models = [("config", config, peer_kwargs(config))]
    if args.peer_defaults:
        models.append(("peer defaults", peer_defaults_config(config), peer_default_kwargs(config)))
    peak = matmul_peak_gflops()
    results = []
    with tempfile.TemporaryDirectory(prefix="legato_bench_") as workdir:
        for name, cfg, kwargs in models:
            rows = bench_model(cfg, kwargs, args, os.path.join(workdir, name.replace(" ", "_")))
            results.append({"name": name, "model": dataclasses.asdict(cfg), "peer_kwargs": kwargs, "rows": rows})
    peak = max(peak, matmul_peak_gflops())  # measured again after the rows: the best of both
    return {
        "config": args.config, "device": str(jax.devices()[0]), "matmul_peak_gflops": peak, "models": results,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peer": "nequip-allegro" if nequip_available() else "not importable (pip install torch==2.13.0 nequip-allegro)",
    }


def _ratio(a, b) -> str:
    return f"{a / b:.2f}x" if a and b else "-"


def format_model(m: dict, peak: float) -> list[str]:
    """One model's table: ours, then the peer eager and exported, ratios per call and per FLOP
    (peer GFLOP/s over ours: < 1 means we do more useful arithmetic per second)."""
    lines = [
        f"{'atoms':>6} {'edges':>8} {'compile s':>9} {'E+F ms':>9} {'us/atom':>8} {'GFLOP':>7} {'% peak':>6} "
        f"{'KiB/edge':>8} | {'peer GFLOP':>10} {'eager ms':>9} {'AOTI ms':>9} {'eager/us':>8} {'AOTI/us':>8} "
        f"{'per FLOP: eager/us':>18} {'AOTI/us':>8}",
    ]
    for row in m["rows"]:
        L, P = row["legato"], row.get("nequip") or {}
        kib = (L["xla_peak_mib"] or float("nan")) * 1024 / L["edges"]
        ours_rate = L["gflop"] / L["call_s"]
        eager_rate = P["gflop"] / P["call_s"] if P else None
        aoti_rate = P["gflop"] / P["aoti_call_s"] if "aoti_call_s" in P else None
        lines.append(
            f"{L['atoms']:6d} {L['edges']:8d} {L['compile_s']:9.1f} {1e3 * L['call_s']:9.1f} {L['us_per_atom']:8.1f} "
            f"{L['gflop']:7.1f} {100 * L['gflops_rate'] / peak:6.1f} {kib:8.1f} | "
            + (f"{P['gflop']:10.1f} {1e3 * P['call_s']:9.1f} " if P else f"{'-':>10} {'-':>9} ")
            + (f"{1e3 * P['aoti_call_s']:9.1f} " if "aoti_call_s" in P else f"{'-':>9} ")
            + f"{_ratio(P.get('call_s'), L['call_s']):>8} {_ratio(P.get('aoti_call_s'), L['call_s']):>8} "
            + f"{_ratio(ours_rate, eager_rate):>18} {_ratio(ours_rate, aoti_rate):>8}"
        )
        if "nequip_error" in row:
            lines.append(f"       peer failed: {row['nequip_error']}")
        if "aoti_export_s" in P:
            lines.append(f"       peer AOTInductor export {P['aoti_export_s']:.0f} s (once, dynamic sizes); "
                         f"max |F_AOTI - F_eager| {P['aoti_force_diff']:.1e} eV/Å; torch threads {P['torch_threads']}")
    first = m["rows"][0]
    lines.append(f"parameters: legato {first['legato']['params']}"
                 + (f", nequip-allegro {first['nequip']['params']}" if "nequip" in first else ""))
    return lines


def format_report(r: dict) -> str:
    peak = r["matmul_peak_gflops"]
    lines = [
        f"inference benchmark (energy + forces per call), {r['config']}, device {r['device']}",
        f"float32 matmul peak (XLA, 2048^3, best of 20 calls before and after): {peak:.1f} GFLOP/s; peer: {r['peer']}",
        "FLOPs: ours as XLA counts them, the peer's as torch's profiler counts them (matmuls, elementwise);"
        " ratios are the peer's time (or time per FLOP) over ours",
    ]
    for m in r["models"]:
        lines += ["", f"model: {m['name']} ({', '.join(f'{k}={v}' for k, v in m['model'].items() if k != 'species')})"]
        lines += format_model(m, peak)
        lines.append(f"peer (nequip-allegro 0.8 AllegroModel): {m['peer_kwargs']}")
    lines.append(f"process peak RSS: {r['peak_rss_mib']:.0f} MiB")
    return "\n".join(lines)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default="allegro-l1", help="model YAML or shipped model preset")
    p.add_argument("--sizes", type=positive_int, nargs="+", default=[864, 6912], help="atoms per ammonia box")
    p.add_argument("--repeats", type=positive_int, default=5, help="timed repetitions (the median is reported)")
    p.add_argument("--edge-block", type=positive_int, default=None,
                   help="evaluate edges in blocks of this many (the model option edge_block)")
    p.add_argument("--no-peer", dest="peer", action="store_false", help="skip nequip-allegro even if importable")
    p.add_argument("--no-aoti", dest="aoti", action="store_false",
                   help="time the peer eager only (skip its AOTInductor export, which compiles for minutes)")
    p.add_argument("--peer-defaults", action="store_true",
                   help="also both models at nequip-allegro's default hyperparameters (r_max, l_max from --config)")
    p.add_argument("--profile", default=None, help="write a JAX profiler trace to this folder")
    add_json_option(p, "the results")


def main(args: argparse.Namespace) -> int:
    check_json_target(args)
    report = run(args)
    emit(args, report, format_report(report))
    return 0
