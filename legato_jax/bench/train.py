"""Training-step benchmark: atoms/s of the Adam and SAM steps at several batch sizes and model
presets on the same frames, the SAM/Adam cost ratio (ideal 2.0: SAM takes a second gradient per
step), where a step's time goes (forward, force backward, parameter backward and optimizer) and
its FLOP rate against this machine's float32 matmul peak."""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import time
from contextlib import nullcontext

import jax
import numpy as np

from legato_jax.cli.options import add_json_option, check_json_target, emit
from legato_jax.bench.inference import matmul_peak_gflops
from legato_jax.cli.options import nonnegative_float, positive_float, positive_int
from legato_jax.train.config import load_train_config
from legato_jax.train.trainer import Trainer, load_datasets


def _flops(compiled) -> float:
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float(cost.get("flops", float("nan"))) if cost else float("nan")


def _median(fn, args, batches, repeats: int) -> tuple[float, object]:
    """Median time of fn(*args, batch) over the batches (cycled to `repeats` calls), compiled once."""
    compiled = jax.jit(fn).lower(*args, batches[0]).compile()
    jax.block_until_ready(compiled(*args, batches[0]))
    times = []
    for k in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(compiled(*args, batches[k % len(batches)]))
        times.append(time.perf_counter() - t)
    return statistics.median(times), compiled


def time_steps(trainer: Trainer, batches, repeats: int, profile: str | None, tag: str) -> dict:
    """The jitted training step on batches of one padded shape: time, compile, memory, FLOPs."""
    state = trainer.init_state()
    t0 = time.perf_counter()
    compiled = jax.jit(trainer.step).lower(state, batches[0]).compile()
    compile_s = time.perf_counter() - t0
    mem = compiled.memory_analysis()
    state, loss, _ = compiled(state, batches[0])
    jax.block_until_ready(loss)
    times = []
    ctx = jax.profiler.trace(os.path.join(profile, tag)) if profile else nullcontext()
    with ctx:
        for k in range(repeats):
            t = time.perf_counter()
            state, loss, _ = compiled(state, batches[k % len(batches)])
            jax.block_until_ready(loss)
            times.append(time.perf_counter() - t)
    step = statistics.median(times)
    return {"compile_s": compile_s, "step_s": step, "gflop": _flops(compiled) / 1e9,
            "xla_peak_mib": None if mem is None else
            (mem.temp_size_in_bytes + mem.argument_size_in_bytes + mem.output_size_in_bytes) / 2**20}


def time_parts(trainer: Trainer, batches, repeats: int) -> dict:
    """Nested times of one Adam step's parts: energies (forward); energies, forces and stress; the loss
    gradient w.r.t. the parameters. Each part's own time is the difference of two of them (noisy when small)."""
    pot, params = trainer.potential, trainer.init_state().params
    forward, _ = _median(lambda p, b: pot.energies(p, b.graph)[0], (params,), batches, repeats)
    forces, _ = _median(lambda p, b: pot.predict(p, b.graph).forces, (params,), batches, repeats)
    grad, _ = _median(jax.grad(trainer.loss), (params,), batches, repeats)
    return {"forward_s": forward, "forces_s": forces, "loss_grad_s": grad}


def same_shape(batches):
    shape = jax.tree_util.tree_map(lambda x: x.shape, batches[0])
    return [b for b in batches if jax.tree_util.tree_map(lambda x: x.shape, b) == shape]


def run(args) -> dict:
    peak = matmul_peak_gflops()
    rows = []
    for config in args.configs:
        base = load_train_config(config, list(args.set) + [f"max_train_frames={args.frames}", "rho=0.0"])
        data = load_datasets(base)
        for batch_size in args.batch_sizes:
            row = {"config": config, "model": base.model_config().to_dict(), "batch_size": batch_size}
            for tag, rho in (("adam", 0.0), ("sam", args.rho)):
                cfg = dataclasses.replace(base, rho=rho, batch_size=batch_size)
                trainer = Trainer(cfg, data=data, progress=False)
                batches = same_shape(list(trainer.train_loader))
                atoms = float(np.mean([np.sum(np.asarray(b.graph.node_mask)) for b in batches]))
                profile = f"{os.path.basename(config)}-b{batch_size}-{tag}"
                row[tag] = time_steps(trainer, batches, args.repeats, args.profile, profile)
                row[tag]["atoms_per_s"] = atoms / row[tag]["step_s"]
                row[tag]["gflops_rate"] = row[tag]["gflop"] / row[tag]["step_s"]
                if tag == "adam":
                    row["parts"] = time_parts(trainer, batches, args.repeats)
                    row["atoms_per_batch"] = atoms
            row["sam_over_adam"] = row["sam"]["step_s"] / row["adam"]["step_s"]
            rows.append(row)
            print(format_row(row, peak), flush=True)
    peak = max(peak, matmul_peak_gflops())  # measured again after the rows: the best of both
    return {"device": str(jax.devices()[0]), "host_cores": os.cpu_count(), "matmul_peak_gflops": peak,
            "frames": args.frames, "rho": args.rho, "rows": rows}


HEADER = ("| config | batch | atoms/step | Adam step | Adam atoms/s | SAM step | SAM atoms/s | SAM/Adam | forward "
          "| force backward | param backward + optimizer | Adam GFLOP/s | % of matmul peak |")


def format_row(w: dict, peak: float) -> str:
    a, s, p = w["adam"], w["sam"], w["parts"]
    ms = lambda t: f"{1e3 * t:.0f} ms"  # noqa: E731
    rest = a["step_s"] - p["forces_s"]
    return (f"| {os.path.basename(w['config'])} | {w['batch_size']} | {w['atoms_per_batch']:.0f} | {ms(a['step_s'])} "
            f"| {a['atoms_per_s']:.0f} | {ms(s['step_s'])} | {s['atoms_per_s']:.0f} | {w['sam_over_adam']:.2f} "
            f"| {ms(p['forward_s'])} | {ms(p['forces_s'] - p['forward_s'])} | {ms(rest)} | {a['gflops_rate']:.1f} "
            f"| {100 * a['gflops_rate'] / peak:.1f} |")


def format_report(r: dict) -> str:
    lines = [f"training-step benchmark on {r['device']} ({r['host_cores']} host cores), first {r['frames']} training "
             f"frames, SAM rho {r['rho']}; float32 matmul peak (XLA, 2048^3, best of 20 calls before and after) {r['matmul_peak_gflops']:.1f} GFLOP/s",
             HEADER, "|" + "---|" * 13]
    return "\n".join(lines + [format_row(w, r["matmul_peak_gflops"]) for w in r["rows"]])


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--configs", nargs="+", default=["configs/train/allegro.yaml", "configs/train/allegro-paper.yaml"],
                   help="training configs whose models and loss are timed (rho is set by this benchmark)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a training option of every config, repeatable")
    p.add_argument("--batch-sizes", type=positive_int, nargs="+", default=[4, 8, 16, 32], help="batch sizes timed")
    p.add_argument("--rho", type=nonnegative_float, default=0.005, help="SAM radius of the SAM rows")
    p.add_argument("--frames", type=positive_int, default=64, help="training frames to draw batches from")
    p.add_argument("--repeats", type=positive_int, default=10, help="timed steps per row")
    p.add_argument("--profile", default=None, help="write jax.profiler traces here, one per row and optimizer")
    peer = p.add_argument_group("training side by side with nequip-allegro (--peer)")
    peer.add_argument("--peer", action="store_true", help="instead of step timings: train the first config and "
                      "nequip-allegro 0.8 (nequip-train) on its split for --minutes each, one core each; test errors")
    peer.add_argument("--minutes", type=positive_float, default=30.0, help="wall time of each training run")
    peer.add_argument("--out", default="runs/bench-peer", help="folder of the two runs (must not hold an earlier one)")
    peer.add_argument("--sequential", action="store_true", help="one run after the other instead of together")
    add_json_option(p, "the results")


def main(args) -> int:
    check_json_target(args)
    if args.peer:
        from pathlib import Path

        from legato_jax.bench import peer_train

        report = peer_train.run(args.configs[0], args.set, args.minutes, Path(args.out), args.sequential)
        emit(args, report, peer_train.format_report(report))
        return 0
    report = run(args)
    emit(args, report, format_report(report))
    return 0
