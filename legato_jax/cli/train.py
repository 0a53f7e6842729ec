"""`legato train`, `legato evaluate`, `legato sharpness`."""

from __future__ import annotations

import sys

from legato_jax.cli.data import add_read_options, read_from_args
from legato_jax.cli.options import add_json_option, check_json_target, emit, positive_int


def register(sub) -> None:
    t = sub.add_parser("train", help="train Allegro / Allegro-Legato (SAM when rho > 0)")
    t.add_argument("config", nargs="?", help="training YAML (see configs/train/)")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a training option (model.KEY for the model), repeatable")
    t.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run")
    t.add_argument("--init-from", metavar="MODEL", help="fine-tune: start from this model's weights (same species "
                   "and architecture as CONFIG's model)")
    t.add_argument("--init-stats", choices=["keep", "refit"], help="with --init-from: keep the model's per-species "
                   "energy scale and shift (default) or refit them on CONFIG's training data")
    t.add_argument("--print-config", action="store_true",
                   help="print the resolved config (every key, defaults filled in, files located) and exit")
    add_json_option(t, "the final summary")
    t.set_defaults(func=_train)

    e = sub.add_parser("evaluate", help="errors of a model on labelled data, with a parity plot")
    e.add_argument("--model", required=True, help="run directory or model file (.npz)")
    e.add_argument("--data", required=True, help="labelled frames (extxyz or ASE-readable)")
    e.add_argument("--split", default=None, help="split file; with --subset, evaluate only those frames")
    e.add_argument("--subset", default="test", choices=["train", "validation", "test"], help="subset of --split to evaluate")
    e.add_argument("--batch-size", type=positive_int, default=8, help="frames per evaluation batch")
    add_json_option(e, "the errors")
    e.add_argument("--plot", default=None, help="write a parity plot PNG here")
    add_read_options(e)
    e.set_defaults(func=_evaluate)

    s = sub.add_parser("sharpness", help="loss sharpness: Gaussian weight noise (paper) and SAM worst case")
    s.add_argument("--model", required=True, help="model file (.npz), run directory or shipped name")
    s.add_argument("--data", required=True, help="labelled frames (extxyz or ASE-readable)")
    s.add_argument("--split", default=None, help="split file; with --subset, use only those frames")
    s.add_argument("--subset", default="train", choices=["train", "validation", "test"], help="subset of --split to probe")
    s.add_argument("--std", type=float, default=0.05, help="relative std of the Gaussian weight noise (the paper's probe)")
    s.add_argument("--draws", type=int, default=100, help="noise draws averaged")
    s.add_argument("--rho", type=float, default=0.05, help="radius of the SAM worst-case probe")
    s.add_argument("--max-frames", type=int, default=None, help="use the first N frames of the subset")
    s.add_argument("--seed", type=int, default=0, help="seed of the noise draws")
    add_json_option(s, "the sharpness")
    add_read_options(s)
    s.set_defaults(func=_sharpness)


def _train(args) -> int:
    from legato_jax.errors import ConfigError
    from legato_jax.outputs import folder
    from legato_jax.train.config import load_train_config, parse_overrides
    from legato_jax.train.trainer import Trainer, resume

    if args.print_config:
        import yaml

        from legato_jax.train.config import TrainConfig

        if args.resume:
            raise ConfigError("--print-config shows a new run's config; a run's own is RUN_DIR/config.yaml")
        extra = [f"init_from={args.init_from}"] if args.init_from else []
        cfg = load_train_config(args.config, args.set + extra) if args.config else TrainConfig()
        print(yaml.safe_dump(cfg.to_dict(), sort_keys=False, default_flow_style=None), end="")
        return 0
    if args.resume:
        if args.init_from or args.init_stats:
            raise ConfigError("--init-from / --init-stats start a new run; --resume continues one with its saved config")
        if args.config:
            raise ConfigError("--resume continues a run with its saved config; do not pass CONFIG")
        overrides = dict(parse_overrides(args.set))
        trainer, state = resume(args.resume, overrides=overrides)
    elif args.config:
        extra = [f"init_from={args.init_from}"] if args.init_from else []
        extra += [f"init_stats={args.init_stats}"] if args.init_stats else []
        cfg = load_train_config(args.config, args.set + extra)
        if (cfg.run_dir / "checkpoint.msgpack").exists():
            raise ConfigError(f"{cfg.run_dir} already holds a run; use --resume {cfg.run_dir}, or another --set name=...")
        folder(cfg.run_dir, "run folder (out_dir/name)")
        trainer, state = Trainer(cfg), None
    else:
        raise ConfigError("give a training CONFIG or --resume RUN_DIR")
    check_json_target(args)
    state = trainer.fit(state)
    val = trainer.evaluate(state.ema)
    summary = {"run_dir": str(trainer.cfg.run_dir), "epochs": int(state.epoch), "steps": int(state.step),
               "stop_reason": trainer.stop_reason, "validation": val}
    emit(args, summary, f"{summary['run_dir']}: {summary['epochs']} epochs, stopped by {summary['stop_reason']}; "
                        f"validation (EMA) force MAE {val['f_mae']:.2f} meV/Å, energy MAE {val['e_mae']:.3f} meV/atom")
    return 0


def _frames_and_graphs(args, potential):
    from legato_jax.data.graph import TypeMap, frame_graph
    from legato_jax.data.split import read_split

    args.species = ",".join(potential.config.species)
    frames = read_from_args(args, args.data)
    if args.split:
        idx = read_split(args.split, len(frames))[args.subset]
        frames = [frames[i] for i in idx]
    if getattr(args, "max_frames", None):
        frames = frames[: args.max_frames]
    if not frames:
        from legato_jax.errors import DataError

        raise DataError(f"{args.data}: no frames to use" + (f" in the '{args.subset}' subset of {args.split}"
                                                            if args.split else ""))
    type_map = TypeMap(potential.config.species)
    return type_map, [frame_graph(f, type_map, potential.config.r_max) for f in frames]


def _evaluate(args) -> int:
    from legato_jax.errors import ConfigError
    from legato_jax.model.io import resolve_model
    from legato_jax.outputs import writable
    from legato_jax.train.evaluate import error_metrics, format_metrics, parity_plot, predict_frames

    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.plot:
        writable(args.plot, "--plot")
    check_json_target(args)
    potential, params, _ = resolve_model(args.model)
    type_map, graphs = _frames_and_graphs(args, potential)
    preds = predict_frames(potential, params, graphs, args.batch_size)
    metrics = error_metrics(graphs, preds, type_map)
    title = f"{args.model} on {args.data}" + (f" [{args.subset}]" if args.split else "")
    emit(args, metrics, format_metrics(metrics, title))
    if args.plot:
        parity_plot(graphs, preds, args.plot, title, type_map.symbols)
        print(f"wrote {args.plot}", file=sys.stderr)
    return 0


def _sharpness(args) -> int:
    from legato_jax.errors import ConfigError
    from legato_jax.experiments.sharpness import dataset_loss_fn, noise_sharpness, sam_sharpness
    from legato_jax.model.io import resolve_model

    checks = {"--std": args.std > 0, "--draws": args.draws >= 1, "--rho": args.rho > 0,
              "--max-frames": args.max_frames is None or args.max_frames >= 1}
    for option, ok in checks.items():
        if not ok:
            raise ConfigError(f"{option} {getattr(args, option[2:].replace('-', '_'))}: must be positive")
    check_json_target(args)
    potential, params, _ = resolve_model(args.model)
    _, graphs = _frames_and_graphs(args, potential)
    loss, grad = dataset_loss_fn(potential, graphs)
    out = {"frames": len(graphs), "noise": noise_sharpness(loss, params, args.std, args.draws, args.seed),
           "sam": sam_sharpness(loss, grad, params, args.rho)}
    n, s = out["noise"], out["sam"]
    emit(args, out, f"{args.model}: loss {n['loss']:.5f} on {len(graphs)} frames\n"
                    f"  noise sharpness (std {n['std']}, {n['draws']} draws): {n['mean_rise']:.5f} ± {n['stderr_rise']:.5f}\n"
                    f"  SAM sharpness (rho {s['rho']}): {s['rise']:.6f}  (|g| = {s['grad_norm']:.4g})")
    return 0
