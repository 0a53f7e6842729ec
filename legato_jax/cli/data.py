"""`legato data ...`: generate reference data, inspect and split datasets."""

from __future__ import annotations

import argparse
import sys

from legato_jax.cli.options import add_json_option, check_json_target, emit
from legato_jax.data.generate import AmmoniaGenConfig, generate_ammonia
from legato_jax.data.io import LabelKeys, read_frames
from legato_jax.data.split import block_split, write_split
from legato_jax.data.stats import dataset_statistics, format_statistics
from legato_jax.errors import ConfigError


def add_read_options(p: argparse.ArgumentParser) -> None:
    """Options every command that reads labelled data shares."""
    p.add_argument("--energy-key", default="energy", help="energy key (calculator results or info)")
    p.add_argument("--forces-key", default="forces", help="forces key (calculator results or arrays)")
    p.add_argument("--stress-key", default="stress", help="stress key (calculator results or info)")
    p.add_argument("--species", default=None, help="comma-separated type map, e.g. H,N; frames with other species are rejected")
    p.add_argument("--min-distance", type=float, default=0.5, help="reject frames with atoms closer than this (Å)")
    p.add_argument("--format", dest="file_format", default=None, help="ASE format name when the suffix does not tell")


def read_from_args(args: argparse.Namespace, path: str):
    keys = LabelKeys(args.energy_key, args.forces_key, args.stress_key)
    type_map = args.species.split(",") if args.species else None
    return read_frames(path, keys, type_map, args.min_distance, file_format=args.file_format)


def register(sub) -> None:
    data = sub.add_parser("data", help="reference data: generate, inspect, split")
    dsub = data.add_subparsers(dest="data_command", metavar="DATA_COMMAND", required=True)

    d = AmmoniaGenConfig()
    g = dsub.add_parser("generate-ammonia", help="GFN1-xTB Langevin MD of liquid ammonia -> extxyz")
    g.add_argument("--out", "--output", dest="output", default=d.output, help="extxyz file to write (appended on rerun)")
    g.add_argument("--n-molecules", type=int, default=d.n_molecules, help="ammonia molecules in the box")
    g.add_argument("--density", type=float, default=d.density, help="g/cm^3")
    g.add_argument("--temperatures", type=float, nargs="+", default=list(d.temperatures), help="K, one segment each")
    g.add_argument("--frames-per-temperature", type=int, default=d.frames_per_temperature, help="frames saved per temperature segment")
    g.add_argument("--stride", type=int, default=d.stride, help="MD steps between saved frames")
    g.add_argument("--dt", "--timestep", dest="timestep", type=float, default=d.timestep, help="time step, fs")
    g.add_argument("--thermalize-steps", type=int, default=d.thermalize_steps, help="MD steps before the first saved frame")
    g.add_argument("--friction", type=float, default=d.friction, help="Langevin friction, 1/fs")
    g.add_argument("--seed", type=int, default=d.seed, help="seed of the initial structure and Langevin noise")
    g.add_argument("--method", default=d.method, choices=["GFN1-xTB", "GFN2-xTB"], help="tblite method of the labels")
    g.add_argument("--workers", type=int, default=1, help="temperature segments run in parallel")
    g.add_argument("--max-new-frames", type=int, default=None, help="stop each segment after this many new frames (rerun to continue)")
    add_json_option(g, "the per-segment report")
    g.set_defaults(func=_generate)

    i = dsub.add_parser("inspect", help="validate a dataset and print its statistics")
    i.add_argument("file")
    i.add_argument("--r-max", type=float, default=6.0, help="cutoff for neighbour statistics (Å)")
    add_json_option(i, "the statistics")
    add_read_options(i)
    i.set_defaults(func=_inspect)

    lab = dsub.add_parser("label", help="reference labels (GFN1-xTB) for frames of a trajectory -> extxyz")
    lab.add_argument("trajectory", help="frames to label, e.g. from legato md --out or legato pimd --beads-out")
    lab.add_argument("--out", "--output", dest="output", required=True, help="extxyz file the labelled frames are appended to")
    lab.add_argument("--start", type=int, default=0, help="first frame to label")
    lab.add_argument("--every", type=int, default=1, help="label every K-th frame from --start")
    lab.add_argument("--max-frames", type=int, default=None, help="label at most this many of the selected frames")
    lab.add_argument("--method", default="GFN1-xTB", choices=["GFN1-xTB", "GFN2-xTB"], help="tblite method of the labels")
    lab.add_argument("--config-type", default=None, help="config_type of the frames (default: labelled_STEM)")
    lab.add_argument("--skip-failed", action="store_true",
                     help="leave out (and list) frames the reference cannot label instead of stopping")
    add_json_option(lab, "the report")
    lab.set_defaults(func=_label)

    s = dsub.add_parser("split", help="deterministic train/validation/test split by frame blocks")
    s.add_argument("file")
    s.add_argument("--out", "--output", dest="output", default=None, help="split file to write (default: FILE with suffix .split.json)")
    s.add_argument("--fractions", type=float, nargs=3, default=[0.8, 0.1, 0.1], metavar=("TRAIN", "VAL", "TEST"), help="fractions of the frames")
    s.add_argument("--seed", type=int, default=0, help="seed of the block shuffle")
    s.add_argument("--block", type=int, default=10, help="consecutive frames kept together")
    add_read_options(s)
    s.set_defaults(func=_split)


def _generate(args) -> int:
    from legato_jax.outputs import writable

    _require_tblite("generate-ammonia")

    if args.workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {args.workers}")
    if args.max_new_frames is not None and args.max_new_frames < 1:
        raise ConfigError(f"--max-new-frames must be >= 1, got {args.max_new_frames}")
    cfg = AmmoniaGenConfig(
        output=args.output,
        n_molecules=args.n_molecules,
        density=args.density,
        temperatures=tuple(args.temperatures),
        frames_per_temperature=args.frames_per_temperature,
        stride=args.stride,
        timestep=args.timestep,
        thermalize_steps=args.thermalize_steps,
        friction=args.friction,
        seed=args.seed,
        method=args.method,
    )
    cfg.validate()
    writable(cfg.output, "--out")
    check_json_target(args)
    reports = generate_ammonia(cfg, workers=args.workers, max_new_frames=args.max_new_frames)
    import dataclasses

    lines = [f"{'T target (K)':>12} {'frames':>7} {'T mean (K)':>11} {'± s.e.':>7} {'T std':>7} {'s/frame':>8} {'intact':>7}  thermostat"]
    lines += [f"{r.temperature:12.1f} {r.frames:7d} {r.mean_temperature:11.2f} {r.stderr_temperature:7.2f} "
              f"{r.std_temperature:7.2f} {r.seconds_per_frame:8.3f} {r.intact_fraction:7.3f}  "
              f"{'ok' if r.thermostat_ok else 'OFF TARGET'}" for r in reports]
    emit(args, [dataclasses.asdict(r) for r in reports], "\n".join(lines))
    done = all(r.frames >= cfg.frames_per_temperature for r in reports)
    print(f"wrote {cfg.output}" if done else "stopped early; rerun the same command to continue", file=sys.stderr)
    return 0


def _require_tblite(command: str) -> None:
    import importlib.util

    if importlib.util.find_spec("tblite") is None:
        raise ConfigError(f"{command} labels frames with GFN1-xTB from tblite, which is not installed: "
                          "pip install 'legato_jax[generate]'")


def _label(args) -> int:
    import dataclasses

    from legato_jax.data.label import label_file
    from legato_jax.outputs import writable

    _require_tblite("label")
    writable(args.output, "--out")
    check_json_target(args)
    report = label_file(args.trajectory, args.output, args.method, args.start, args.every, args.max_frames,
                        args.config_type, log=lambda line: print(line, file=sys.stderr),
                        skip_failed=args.skip_failed)
    failed = (f", {len(report.failed)} left out: the reference failed on frames "
              f"{', '.join(map(str, report.failed))}" if report.failed else "")
    emit(args, dataclasses.asdict(report),
         f"{report.source}: {report.selected} frames selected, {report.already} labelled before, "
         f"{report.labelled} labelled now -> {report.output}{failed}")
    return 0


def _inspect(args) -> int:
    if not args.r_max > 0:
        raise ConfigError(f"--r-max must be > 0 Å, got {args.r_max}")
    check_json_target(args)
    frames = read_from_args(args, args.file)
    stats = dataset_statistics(frames, args.r_max)
    emit(args, stats, format_statistics(stats, args.file))
    return 0


def _split(args) -> int:
    from legato_jax.outputs import writable

    out = writable(args.output or _split_path(args.file), "--out")
    frames = read_from_args(args, args.file)
    split = block_split(len(frames), args.fractions, args.seed, args.block)
    meta = {"file": args.file, "frames": len(frames), "fractions": args.fractions, "seed": args.seed, "block": args.block}
    write_split(out, split, meta)
    print(f"wrote {out}: " + ", ".join(f"{k} {len(v)}" for k, v in split.items()))
    return 0


def _split_path(path: str) -> str:
    for suffix in (".xz", ".gz", ".bz2"):
        if path.endswith(suffix):
            path = path[: -len(suffix)]
    stem = path.rsplit(".", 1)[0] if "." in path.rsplit("/", 1)[-1] else path
    return stem + ".split.json"
