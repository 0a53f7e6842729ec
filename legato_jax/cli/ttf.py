"""`legato ttf`: the time-to-failure experiment and the fidelity-scaling exponent."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from legato_jax.cli.options import add_json_option, check_json_target, emit
from legato_jax.experiments.failure import CRITERIA

if TYPE_CHECKING:
    from legato_jax.experiments.ttf import TTFConfig


def register(sub) -> None:
    p = sub.add_parser("ttf", help="time to failure of MD replicas at several sizes, and beta of t ~ N^-beta")
    p.add_argument("--model", "--models", dest="models", action="extend", nargs="+", required=True, metavar="MODEL",
                   help="model files (.npz), run directories or shipped names; repeat or list several")
    add_protocol_arguments(p)
    add_json_option(p, "every replica's times, summaries and fits")
    p.add_argument("--plot", metavar="PNG", help="log-log t_failure against N, one panel per criterion")
    p.add_argument("--out", metavar="DIR", help="write each finished model and size here; a later call with the same "
                                                "protocol reuses them, so an interrupted experiment continues")
    p.set_defaults(func=main)


def add_protocol_arguments(p, sizes_required: bool = True) -> None:
    """Options of the time-to-failure protocol, shared with `legato rho-scan`."""
    p.add_argument("--sizes", nargs="+", type=int, required=sizes_required, metavar="N",
                   help="atoms per system: multiples of the 64-atom ammonia cell (512, 1728, 4096, ...)")
    p.add_argument("--replicas", type=int, default=8, help="independent replicas per size (own initial velocities)")
    p.add_argument("--preset", default="paper-code", help="a shipped preset (legato_jax/md/presets: paper-code, paper-text, stressed, demo) or a YAML path")
    p.add_argument("--max-steps", type=int, help="step limit (a preset's open-ended stage takes what is left)")
    p.add_argument("--criteria", nargs="+", choices=CRITERIA, default=list(CRITERIA),
                   help="failure criteria to report; a replica runs until all of them have fired")
    p.add_argument("--temperature", type=float, help="K: initial velocities and thermostat (default: the preset's)")
    p.add_argument("--hydrogen-mass", type=float, help="amu (default: the preset's)")
    p.add_argument("--t-window", type=float, nargs=2, default=(100.0, 300.0), metavar=("LOW", "HIGH"),
                   help="temperature criterion window in K")
    p.add_argument("--nh-stretch", type=float, default=0.5, help="Å beyond the equilibrium N-H length")
    p.add_argument("--lone-hydrogen", type=float, default=2.5, help="Å from every nitrogen")
    p.add_argument("--fail-distance", "--min-distance", dest="min_distance", type=float, default=0.6,
                   help="Å: failed once any two atoms come closer")
    p.add_argument("--density", type=float, help="g/cm^3 (default: the shipped cell's 0.68)")
    p.add_argument("--every", type=int, default=10, help="steps between failure checks")
    p.add_argument("--chunk", type=int, default=1000, help="steps per compiled chunk")
    p.add_argument("--seed", type=int, default=0, help="seed of the replicas' initial velocities")
    p.add_argument("--precision", choices=["float32", "float64"], help="default: the model's")


def build_config(args) -> "TTFConfig":
    from legato_jax.experiments.failure import FailureCriteria
    from legato_jax.experiments.ttf import TTFConfig
    from legato_jax.md.run import load_preset

    preset = load_preset(args.preset, args.max_steps, args.temperature)
    thresholds = FailureCriteria(t_low=args.t_window[0], t_high=args.t_window[1], nh_stretch=args.nh_stretch,
                                 lone_hydrogen=args.lone_hydrogen, min_distance=args.min_distance)
    h_mass = args.hydrogen_mass if args.hydrogen_mass is not None else preset["hydrogen_mass"]
    return TTFConfig(tuple(args.sizes), args.replicas, preset["stages"], preset["temperature_K"], h_mass,
                     tuple(args.criteria), thresholds, args.density, args.every, args.chunk, args.seed, args.precision)


def main(args) -> int:
    from legato_jax.cli.md import model_name
    from legato_jax.experiments.ttf import compare_models, format_table, run_ttf
    from legato_jax.model.io import resolve_model

    from legato_jax.outputs import writable

    cfg = build_config(args)
    if args.plot:
        writable(args.plot, "--plot")
    check_json_target(args)
    models = {}
    for path in args.models:
        name = model_name(path)
        if name in models:
            name = path
        potential, params, _ = resolve_model(path)
        models[name] = (potential, params)
    result = run_ttf(models, cfg, log=lambda line: print(line, file=sys.stderr, flush=True), out_dir=args.out)
    emit(args, result, "\n".join(filter(None, [format_table(result), compare_models(result)])))
    if args.plot:
        from legato_jax.experiments.plots import plot_ttf

        print(f"wrote {plot_ttf(result, args.plot)}")
    return 0
