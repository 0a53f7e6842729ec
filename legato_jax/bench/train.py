"""Training-step benchmark: steps/s of Adam and SAM on the same batches, and their cost ratio
(ideal 2.0: SAM takes a second gradient per step)."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from contextlib import nullcontext

import jax

from legato_jax.train.config import load_train_config
from legato_jax.train.trainer import Trainer


def time_steps(trainer: Trainer, batches, profile: str | None, tag: str) -> dict:
    state = trainer.init_state()
    t0 = time.perf_counter()
    compiled = jax.jit(trainer.step).lower(state, batches[0]).compile()
    compile_s = time.perf_counter() - t0
    mem = compiled.memory_analysis()
    shape = jax.tree_util.tree_map(lambda x: x.shape, batches[0])
    same = [b for b in batches if jax.tree_util.tree_map(lambda x: x.shape, b) == shape]
    state, loss, _ = compiled(state, same[0])
    jax.block_until_ready(loss)
    times = []
    ctx = jax.profiler.trace(os.path.join(profile, tag)) if profile else nullcontext()
    with ctx:
        for b in same[1:]:
            t = time.perf_counter()
            state, loss, _ = compiled(state, b)
            jax.block_until_ready(loss)
            times.append(time.perf_counter() - t)
    step = statistics.median(times)
    return {"compile_s": compile_s, "step_s": step, "steps_per_s": 1 / step, "timed_steps": len(times),
            "xla_peak_mib": None if mem is None else
            (mem.temp_size_in_bytes + mem.argument_size_in_bytes + mem.output_size_in_bytes) / 2**20}


def run(args) -> dict:
    rows = {}
    batches = None
    for tag, rho in (("adam", 0.0), ("sam", args.rho)):
        cfg = load_train_config(args.config, list(args.set) + [f"rho={rho}", f"max_train_frames={args.frames}"])
        trainer = Trainer(cfg, progress=False)
        if batches is None:
            batches = list(trainer.train_loader)
        rows[tag] = time_steps(trainer, batches, args.profile, tag)
    return {"config": args.config, "device": str(jax.devices()[0]), "batch_size": cfg.batch_size,
            "rows": rows, "sam_over_adam": rows["sam"]["step_s"] / rows["adam"]["step_s"]}


def format_report(r: dict) -> str:
    lines = [f"training-step benchmark, {r['config']}, batch {r['batch_size']}, device {r['device']}",
             f"{'optimizer':>9} {'compile s':>9} {'step ms':>8} {'steps/s':>8} {'XLA MiB':>8} {'steps timed':>11}"]
    for tag, row in r["rows"].items():
        lines.append(f"{tag:>9} {row['compile_s']:9.1f} {1e3 * row['step_s']:8.1f} {row['steps_per_s']:8.2f} "
                     f"{row['xla_peak_mib'] or float('nan'):8.0f} {row['timed_steps']:11d}")
    lines.append(f"SAM / Adam step-time ratio: {r['sam_over_adam']:.2f} (ideal 2.0)")
    return "\n".join(lines)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default="configs/train/legato.yaml")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--rho", type=float, default=0.005)
    p.add_argument("--frames", type=int, default=64, help="training frames to draw batches from")
    p.add_argument("--profile", default=None)
    p.add_argument("--json", default=None)


def main(args) -> int:
    report = run(args)
    print(format_report(report))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=1)
    return 0
