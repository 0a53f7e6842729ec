"""MD and training steps of this tree against an earlier commit, on the same machine in one run:
`legato bench md` (shipped CPU model and the paper model) and `legato bench train` (Adam and SAM)
in a git worktree of BEFORE and in this tree, one after the other, then a before/after table.

    python scripts/bench_before_after.py [--before e81f16e] [--sizes 864 6912] [--out DIR]

The paper model runs with untrained weights whose energy scale is small (1e-3 eV), so that the
few MD steps stay near the start; timings do not depend on the weights' values."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUN = "import sys; from legato_jax.cli.main import main; sys.exit(main(sys.argv[1:]))"


PAPER_MODEL = """
import sys, jax
from legato_jax.data.ammonia import tiled_ammonia_packing
from legato_jax.data.graph import TypeMap, atoms_to_graph, collate
from legato_jax.model.config import AllegroConfig, ModelStats
from legato_jax.model.io import save_model
from legato_jax.model.potential import Potential
config = AllegroConfig.from_yaml("configs/model/allegro-l1.yaml")
fg = atoms_to_graph(tiled_ammonia_packing(64, seed=0), TypeMap(config.species), config.r_max)
pot = Potential(config, ModelStats(avg_num_neighbors=fg.n_edge / fg.n_node, species_scale=(1e-3, 1e-3),
                                   species_shift=(0.0, 0.0)))
save_model(sys.argv[1], pot, pot.init(jax.random.PRNGKey(0), collate([fg], fg.n_node + 1, fg.n_edge, 2, config.r_max).graph))
"""


def paper_model_file(tree: Path, path: Path) -> Path:
    """An untrained `allegro-l1` model file (the paper's architecture) written by `tree`'s code,
    so that each tree reads a file of its own format (the same weights: same seed and layout)."""
    subprocess.run([sys.executable, "-c", PAPER_MODEL, str(path)], cwd=tree, env=dict(os.environ, PYTHONPATH=str(tree)),
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return path


def legato(tree: Path, argv: list[str], out: Path) -> dict:
    """One `legato ...` command with `tree`'s package first on the path; its JSON report."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    done = subprocess.run([sys.executable, "-c", RUN, *argv, "--json", str(out)], cwd=tree, env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{tree}: legato {' '.join(argv)} failed: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(out.read_text())


def measure(tree: Path, args, out: Path) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    models = {"shipped": (ROOT / args.model).resolve(), "paper": paper_model_file(tree, out / "paper.npz")}
    md = {name: legato(tree, ["bench", "md", "--model", str(path), "--sizes", *map(str, args.sizes), "--steps",
                              str(args.steps), "--steps-large", str(args.steps_large), "--repeats", "1",
                              "--peer-steps", "0", "--every", str(args.every)], out / f"md_{name}.json")
          for name, path in models.items()}
    train = legato(tree, ["bench", "train", "--configs", *args.train_configs, "--batch-sizes", "4", "--repeats",
                          str(args.train_repeats)], out / "train.json")
    return {"md": md, "train": train}


def table(before: dict, after: dict, commit: str) -> str:
    lines = [f"| | atoms | before ({commit}) | after | speed-up | after: MD step / force call on exact edges |",
             "|---|---|---|---|---|---|"]
    for name in after["md"]:
        for b, a in zip(before["md"][name]["rows"], after["md"][name]["rows"]):
            lines.append(f"| MD step, {name} model | {a['n_atoms']} | {b['md_step_s'] * 1e3:.0f} ms "
                         f"({b['atom_steps_per_s']:.3g} atom-steps/s) | {a['md_step_s'] * 1e3:.0f} ms "
                         f"({a['atom_steps_per_s']:.3g} atom-steps/s) | {b['md_step_s'] / a['md_step_s']:.2f}x "
                         f"| {a['md_over_exact_force']:.2f}x |")
    for b, a in zip(before["train"]["rows"], after["train"]["rows"]):
        for tag in ("adam", "sam"):
            lines.append(f"| {tag.upper()} step, {Path(a['config']).name}, batch {a['batch_size']} | - "
                         f"| {b[tag]['step_s'] * 1e3:.0f} ms | {a[tag]['step_s'] * 1e3:.0f} ms "
                         f"| {b[tag]['step_s'] / a[tag]['step_s']:.2f}x | - |")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--before", default="e81f16e", help="the earlier commit")
    p.add_argument("--sizes", type=int, nargs="+", default=[864, 6912])
    p.add_argument("--steps", type=int, default=10, help="timed MD steps up to 2,000 atoms")
    p.add_argument("--steps-large", type=int, default=5, help="timed MD steps above 2,000 atoms")
    p.add_argument("--every", type=int, default=5, help="thermo interval of the MD runs")
    p.add_argument("--train-configs", nargs="+", default=["configs/train/allegro.yaml", "configs/train/allegro-paper.yaml"])
    p.add_argument("--train-repeats", type=int, default=5)
    p.add_argument("--model", default="models/allegro/best.npz", help="the shipped model timed in MD")
    p.add_argument("--out", type=Path, default=None, help="keep the JSON reports here")
    p.add_argument("--reports", type=Path, default=None, help="print the table of an earlier run's --out folder")
    args = p.parse_args()
    if args.reports:
        load = lambda d: {"md": {n: json.loads((d / f"md_{n}.json").read_text()) for n in ("shipped", "paper")},  # noqa: E731
                          "train": json.loads((d / "train.json").read_text())}
        print(table(load(args.reports / "before"), load(args.reports / "after"), args.before))
        return 0
    with tempfile.TemporaryDirectory(prefix="before_after_") as tmp:
        tmp = Path(tmp)
        out = (args.out or tmp / "reports").resolve()
        tree = tmp / "before"
        subprocess.run(["git", "worktree", "add", "--detach", str(tree), args.before], cwd=ROOT, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            before = measure(tree, args, out / "before")
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, check=True)
        after = measure(ROOT, args, out / "after")
    print(f"MD (Nose-Hoover, dt 1 fs) and training steps, before = {args.before}, after = this tree, same machine, one run")
    print(table(before, after, args.before))
    return 0


if __name__ == "__main__":
    sys.exit(main())
