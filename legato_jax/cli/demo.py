"""`legato demo`: the main job on shipped defaults: the data pipeline, the shipped models' test
errors, a short NVT -> NVE ammonia run with each shipped model, and a small time-to-failure
comparison of the two under the stressed protocol."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from legato_jax.data.batching import BatchLoader
from legato_jax.data.graph import TypeMap, frame_graph
from legato_jax.data.io import read_frames
from legato_jax.data.plots import plot_dataset_summary
from legato_jax.data.split import read_split
from legato_jax.data.stats import dataset_statistics, format_statistics
from legato_jax.cli.md import model_name
from legato_jax.cli.options import positive_float, positive_int
from legato_jax.model.io import resolve_model
from legato_jax.outputs import atomic_write_text, folder
from legato_jax.train.evaluate import error_metrics, format_metrics, parity_plot, predict_frames

DEFAULT_DATA = "data/ammonia.extxyz.xz"
DEFAULT_SPLIT = "data/ammonia.split.json"
DEFAULT_MODELS = ("allegro", "legato")  # the shipped models, by name
PARTS = ("data", "test errors", "MD", "time to failure")


def register(sub) -> None:
    p = sub.add_parser("demo", help="run the main job on the shipped defaults")
    p.add_argument("--data", default=DEFAULT_DATA, help="dataset (a file or the shipped dataset)")
    p.add_argument("--split", default=DEFAULT_SPLIT, help="split file of --data")
    p.add_argument("--r-max", type=positive_float, default=6.0, help="Å, for the data statistics")
    p.add_argument("--batch-size", type=positive_int, default=4, help="batch size of the batching statistics")
    p.add_argument("--model", "--models", dest="models", action="extend", nargs="+",
                   help=f"models to compare (files, run directories or shipped names; default: {' '.join(DEFAULT_MODELS)})")
    p.add_argument("--out", default="demo", help="folder for the figures")
    p.add_argument("--md-molecules", type=positive_int, default=128, help="ammonia molecules in the MD box (16 x a x b x c)")
    p.add_argument("--md-preset", default="demo", help="MD preset (legato_jax/md/presets)")
    p.add_argument("--md-steps", type=positive_int, help="MD steps (default: the preset's)")
    p.add_argument("--ttf-sizes", type=positive_int, nargs="*", default=[64, 128, 256],
                   help="atoms per time-to-failure system (none: skip the comparison)")
    p.add_argument("--ttf-replicas", type=positive_int, default=4, help="replicas per size and model")
    p.add_argument("--ttf-preset", default="paper-code",
                   help="MD preset of the time-to-failure runs (legato_jax/md/presets; paper-code: the paper's LAMMPS protocol)")
    p.add_argument("--ttf-max-steps", type=positive_int, default=250, help="step limit of each replica")
    p.add_argument("--ttf-criteria", nargs="+", default=["nh_bond"], help="failure criteria reported")
    p.set_defaults(func=run)


def load_models(refs: list[str]) -> dict[str, tuple]:
    """name -> (potential, params) for each model reference, or a one-line error naming a missing one."""
    return {model_name(ref): resolve_model(ref)[:2] for ref in refs}


def run(args) -> int:
    folder(args.out, "--out")
    t0 = time.perf_counter()
    parts = list(PARTS) if args.ttf_sizes else list(PARTS[:-1])

    def part(name: str) -> None:
        print(f"[{parts.index(name) + 1}/{len(parts)}] {name} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)

    models = load_models(args.models or DEFAULT_MODELS)
    part("data")
    frames = read_frames(args.data)
    print(format_statistics(dataset_statistics(frames, args.r_max), args.data))
    split = read_split(args.split, len(frames))
    print("split                 " + "  ".join(f"{k} {len(v)}" for k, v in split.items()))

    type_map = TypeMap.from_frames(frames)
    graphs = [frame_graph(frames[k], type_map, args.r_max) for k in split["train"]]
    loader = BatchLoader(graphs, args.batch_size, args.r_max, seed=0)
    n_batches = sum(1 for _ in loader)
    st = loader.stats
    print(
        f"batching              {n_batches} train batches of {args.batch_size}; shapes {sorted(st.shapes)}; "
        f"padding overhead: atoms {100 * st.node_overhead:.1f} %, edges {100 * st.edge_overhead:.1f} %"
    )
    png = plot_dataset_summary(frames, Path(args.out) / "data_summary.png", args.r_max)
    print(f"wrote {png}")

    part("test errors")
    test_frames = [frames[k] for k in split["test"]]
    for name, (potential, params) in models.items():
        tmap = TypeMap(potential.config.species)
        graphs = [frame_graph(f, tmap, potential.config.r_max) for f in test_frames]
        preds = predict_frames(potential, params, graphs)
        metrics = error_metrics(graphs, preds, tmap)
        print(format_metrics(metrics, f"{name} on the test split"))
        atomic_write_text(Path(args.out) / f"metrics_{name}.json", json.dumps(metrics, indent=1))
        parity_plot(graphs, preds, Path(args.out) / f"parity_{name}.png", f"{name}: test split", tmap.symbols)
    part("MD")
    run_md_demo(args, models)
    if args.ttf_sizes:
        part("time to failure")
        run_ttf_demo(args, models)
    print(f"done in {time.perf_counter() - t0:.1f} s; figures in {args.out}/")
    return 0


def run_md_demo(args, models: dict[str, tuple]) -> None:
    """NVT -> NVE on a liquid-ammonia box with each model; thermo CSVs and one plot."""
    from legato_jax.md.observers import format_summary
    from legato_jax.md.plots import plot_thermo
    from legato_jax.md.run import MDConfig, load_preset, run_md
    from legato_jax.data.ammonia import liquid_ammonia

    cfg = MDConfig(**load_preset(args.md_preset, args.md_steps))
    atoms = liquid_ammonia(args.md_molecules)
    thermos, trajectories = {}, {}
    for name, (potential, params) in models.items():
        trajectories[name] = Path(args.out) / f"md_{name}.extxyz"
        res = run_md(potential, params, atoms, cfg, thermo_path=Path(args.out) / f"md_{name}.csv",
                     traj_path=trajectories[name], progress=True, name=name,
                     where=f"--md-molecules {args.md_molecules}")
        print(format_summary(res.summary))
        thermos[name] = res.thermo
    stages = " -> ".join(f"{s.ensemble} {s.steps} x {s.dt_fs} fs" for s in cfg.stages)
    png = plot_thermo(thermos, Path(args.out) / "md_thermo.png", f"{len(atoms)} atoms NH3: {stages}")
    print(f"wrote {png}")
    print(f"wrote {plot_md_structure(trajectories, args.data, Path(args.out) / 'md_rdf.png')}")


def plot_md_structure(trajectories: dict[str, Path], data: str, path: Path) -> Path:
    """g(r) of each model's MD (its second half) beside the g(r) of the training data: is the
    liquid the data's liquid?"""
    from legato_jax.analysis import largest_rmax, rdf
    from legato_jax.analysis.plots import plot_rdf_comparison
    from legato_jax.cli.analyze import read_trajectory

    reference = read_trajectory(data)
    reference = reference[:: max(1, len(reference) // 200)]
    pairs = [("N", "N"), ("H", "N"), ("H", "H")]
    runs = {name: read_trajectory(str(p)) for name, p in trajectories.items()}
    runs = {name: frames[len(frames) // 2:] for name, frames in runs.items()}
    rmax = min(largest_rmax(reference), *(largest_rmax(f) for f in runs.values()))
    curves = {f"{name} MD": rdf(frames, pairs, rmax, 100) for name, frames in runs.items()}
    curves["training data"] = rdf(reference, pairs, rmax, 100)
    return plot_rdf_comparison(curves, path)


def run_ttf_demo(args, models: dict[str, tuple]) -> None:
    """Replicas of each model at a few sizes until they fail: the table, the beta fits, a
    comparison line and demo/ttf.png."""
    from legato_jax.experiments.plots import plot_ttf
    from legato_jax.experiments.ttf import TTFConfig, compare_models, format_table, run_ttf
    from legato_jax.md.run import load_preset

    preset = load_preset(args.ttf_preset, args.ttf_max_steps)
    cfg = TTFConfig(tuple(args.ttf_sizes), args.ttf_replicas, preset["stages"], preset["temperature_K"],
                    preset["hydrogen_mass"], tuple(args.ttf_criteria), chunk_steps=50)
    print(f"time to failure, preset {args.ttf_preset}: {preset['stages'][0].ensemble} at "
          f"{preset['temperature_K']:g} K, dt {preset['stages'][0].dt_fs} fs, m_H {preset['hydrogen_mass']} amu")
    result = run_ttf(models, cfg, log=lambda line: print(f"  {line}", file=sys.stderr, flush=True))
    print(format_table(result))
    print(compare_models(result))
    out = Path(args.out)
    atomic_write_text(out / "ttf.json", json.dumps(result, indent=1))
    print(f"wrote {plot_ttf(result, out / 'ttf.png')}")
