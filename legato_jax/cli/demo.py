"""`legato demo`: the main job on shipped defaults: the data pipeline, the shipped models' test
errors, a short NVT -> NVE ammonia run with each shipped model, and a small time-to-failure
comparison of the two under the stressed protocol."""

from __future__ import annotations

import json
import time
from pathlib import Path

from legato_jax.data.batching import BatchLoader
from legato_jax.data.graph import TypeMap, frame_graph
from legato_jax.data.io import read_frames
from legato_jax.data.plots import plot_dataset_summary
from legato_jax.data.split import read_split
from legato_jax.data.stats import dataset_statistics, format_statistics
from legato_jax.model.io import load_model
from legato_jax.train.evaluate import error_metrics, format_metrics, parity_plot, predict_frames

DEFAULT_DATA = "data/ammonia.extxyz.xz"
DEFAULT_SPLIT = "data/ammonia.split.json"
DEFAULT_MODELS = ("models/allegro/best.npz", "models/legato/best.npz")


def register(sub) -> None:
    p = sub.add_parser("demo", help="run the main job on the shipped defaults")
    p.add_argument("--data", default=DEFAULT_DATA)
    p.add_argument("--split", default=DEFAULT_SPLIT)
    p.add_argument("--r-max", type=float, default=6.0)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--models", nargs="*", default=list(DEFAULT_MODELS), help="models to evaluate on the test split")
    p.add_argument("--out", default="demo", help="folder for the figures")
    p.add_argument("--md-molecules", type=int, default=128, help="ammonia molecules in the MD box (16 x a x b x c)")
    p.add_argument("--md-preset", default="demo", help="MD preset (legato_jax/md/presets)")
    p.add_argument("--md-steps", type=int, help="MD steps (default: the preset's)")
    p.add_argument("--ttf-sizes", type=int, nargs="*", default=[512, 1024],
                   help="atoms per time-to-failure system (none: skip the comparison)")
    p.add_argument("--ttf-replicas", type=int, default=4)
    p.add_argument("--ttf-preset", default="stressed", help="MD preset of the time-to-failure runs (legato_jax/md/presets)")
    p.add_argument("--ttf-max-steps", type=int, default=150)
    p.add_argument("--ttf-criteria", nargs="+", default=["temperature", "nh_bond"])
    p.set_defaults(func=run)


def run(args) -> int:
    t0 = time.perf_counter()
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

    test_frames = [frames[k] for k in split["test"]]
    for path in args.models:
        if not Path(path).exists():
            print(f"model {path} not found; skipped")
            continue
        potential, params, _ = load_model(path)
        tmap = TypeMap(potential.config.species)
        graphs = [frame_graph(f, tmap, potential.config.r_max) for f in test_frames]
        preds = predict_frames(potential, params, graphs)
        metrics = error_metrics(graphs, preds, tmap)
        print(format_metrics(metrics, f"{path} on the test split"))
        name = Path(path).parent.name or Path(path).stem
        (Path(args.out) / f"metrics_{name}.json").write_text(json.dumps(metrics, indent=1))
        parity_plot(graphs, preds, Path(args.out) / f"parity_{name}.png", f"{name}: test split")
    run_md_demo(args)
    if args.ttf_sizes:
        run_ttf_demo(args)
    print(f"done in {time.perf_counter() - t0:.1f} s; figures in {args.out}/")
    return 0


def run_md_demo(args) -> None:
    """NVT -> NVE on a liquid-ammonia box with each shipped model; thermo CSVs and one plot."""
    from legato_jax.md.observers import format_summary
    from legato_jax.md.plots import plot_thermo
    from legato_jax.md.run import MDConfig, load_preset, run_md
    from legato_jax.data.ammonia import liquid_ammonia

    cfg = MDConfig(**load_preset(args.md_preset, args.md_steps))
    atoms = liquid_ammonia(args.md_molecules)
    thermos = {}
    for path in args.models:
        if not Path(path).exists():
            continue
        potential, params, _ = load_model(path)
        name = Path(path).parent.name or Path(path).stem
        res = run_md(potential, params, atoms, cfg, thermo_path=Path(args.out) / f"md_{name}.csv",
                     progress=False, name=name, where=f"--md-molecules {args.md_molecules}")
        print(format_summary(res.summary))
        thermos[name] = res.thermo
    if thermos:
        stages = " -> ".join(f"{s.ensemble} {s.steps} x {s.dt_fs} fs" for s in cfg.stages)
        png = plot_thermo(thermos, Path(args.out) / "md_thermo.png", f"{len(atoms)} atoms NH3: {stages}")
        print(f"wrote {png}")


def run_ttf_demo(args) -> None:
    """Replicas of each shipped model at a few sizes until they fail: the table, the beta fits,
    a comparison line and demo/ttf.png."""
    from legato_jax.experiments.plots import plot_ttf
    from legato_jax.experiments.ttf import TTFConfig, compare_models, format_table, run_ttf
    from legato_jax.md.run import load_preset

    preset = load_preset(args.ttf_preset, args.ttf_max_steps)
    cfg = TTFConfig(tuple(args.ttf_sizes), args.ttf_replicas, preset["stages"], preset["temperature_K"],
                    preset["hydrogen_mass"], tuple(args.ttf_criteria), chunk_steps=50)
    models = {}
    for path in args.models:
        if Path(path).exists():
            potential, params, _ = load_model(path)
            models[Path(path).parent.name or Path(path).stem] = (potential, params)
    if not models:
        return
    print(f"time to failure, preset {args.ttf_preset}: {preset['stages'][0].ensemble} at "
          f"{preset['temperature_K']:g} K, dt {preset['stages'][0].dt_fs} fs, m_H {preset['hydrogen_mass']} amu")
    result = run_ttf(models, cfg, log=lambda line: None)
    print(format_table(result))
    print(compare_models(result))
    out = Path(args.out)
    (out / "ttf.json").write_text(json.dumps(result, indent=1))
    print(f"wrote {plot_ttf(result, out / 'ttf.png')}")
