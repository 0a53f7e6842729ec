"""`legato pimd`: path-integral MD (PILE-L, PILE-G, TRPMD) with a trained model; several --beads
values give a convergence table in P."""

from __future__ import annotations

import sys

from legato_jax.cli.md import add_structure_arguments, build_structure, model_name
from legato_jax.cli.options import (
    add_json_option,
    check_json_target,
    emit,
    nonnegative_float,
    nonnegative_int,
    positive_float,
    positive_int,
)
from legato_jax.errors import ConfigError


def register(sub) -> None:
    p = sub.add_parser("pimd", help="path-integral MD (nuclear quantum effects): PILE-L / PILE-G / TRPMD")
    p.add_argument("--model", default="legato", help="model file (.npz), run directory, or a shipped model's name")
    add_structure_arguments(p, restart=False)
    p.add_argument("--molecule", metavar="NAME",
                   help="one isolated molecule of ASE's g2 set (e.g. NH3) in a cubic periodic box of --box Å")
    p.add_argument("--box", type=positive_float, default=15.0, help="box edge in Å for --molecule")
    p.add_argument("--preset", help="take the temperature, time step and hydrogen mass of an MD preset "
                                    "(its ensembles are not used: the ring polymer has its own thermostat)")
    p.add_argument("--beads", type=positive_int, nargs="+", default=[8],
                   help="beads P; several values run one after another and print a convergence table")
    p.add_argument("--temperature", type=positive_float, help="K (default: the preset's, else 200)")
    p.add_argument("--dt", type=positive_float, help="time step in fs (default: the preset's, else 0.5)")
    p.add_argument("--steps", type=positive_int, default=2000, help="production steps")
    p.add_argument("--equilibrate", type=nonnegative_int, default=0, help="PILE-L steps before production")
    p.add_argument("--thermostat", choices=["pile-l", "pile-g"], default="pile-l",
                   help="centroid thermostat of production: Langevin (pile-l) or stochastic rescaling (pile-g)")
    p.add_argument("--trpmd", action="store_true",
                   help="production as thermostatted ring-polymer MD (no centroid thermostat; internal-mode "
                        "friction lambda = 0.5 unless --pile-lambda): approximate quantum dynamics for spectra")
    p.add_argument("--tau", type=positive_float, default=100.0, help="centroid thermostat time in fs")
    p.add_argument("--pile-lambda", type=nonnegative_float, help="internal-mode friction 2 lambda w_k (default 1, TRPMD 0.5)")
    p.add_argument("--hydrogen-mass", type=positive_float, help="amu (default: the preset's or 1.008)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bead momenta and the thermostat noise")
    p.add_argument("--precision", choices=["float32", "float64"], help="default: the model's")
    p.add_argument("--skin", type=nonnegative_float, default=0.5, help="neighbour-list skin in Å")
    p.add_argument("--log-every", type=positive_int, default=10, help="steps between estimator rows")
    p.add_argument("--traj-every", type=positive_int, help="production steps between centroid frames (default: --log-every)")
    p.add_argument("--chunk", type=positive_int, default=1000, help="steps per compiled chunk")
    p.add_argument("--out", help="centroid trajectory (extxyz: positions, momenta, masses) of the production stage")
    p.add_argument("--beads-out", metavar="FILE",
                   help="every bead's positions (extxyz, P frames per time): the quantum g(r) with legato analyze --rdf")
    p.add_argument("--beads-every", type=positive_int, help="production steps between bead frames (default: --traj-every)")
    p.add_argument("--log", help="estimators CSV, one row per --log-every steps")
    p.add_argument("--health", choices=["stop", "warn", "off"], default="stop",
                   help="when the beads' mean potential energy falls 0.1 eV/atom below the classical start (a "
                        "spurious minimum of the model that the spread ring polymers found): stop (exit status 3), "
                        "warn, or do not check")
    add_json_option(p, "the summary")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=main, restart=None)


def settings(args) -> dict:
    """Temperature, dt and hydrogen mass: the options, else the preset's, else 200 K and 0.5 fs."""
    temperature, dt, hydrogen_mass = args.temperature, args.dt, args.hydrogen_mass
    if args.preset:
        from legato_jax.md.config import load_preset

        kw = load_preset(args.preset, 1)
        temperature = temperature if temperature is not None else kw["temperature_K"]
        dt = dt if dt is not None else kw["stages"][0].dt_fs
        hydrogen_mass = hydrogen_mass if hydrogen_mass is not None else kw["hydrogen_mass"]
    return {"temperature_K": 200.0 if temperature is None else temperature, "dt_fs": 0.5 if dt is None else dt,
            "hydrogen_mass": hydrogen_mass}


def structure(args):
    if args.molecule is None:
        return build_structure(args)
    from ase.build import molecule

    if args.structure or args.ammonia or args.density or args.replicate:
        raise ConfigError("--molecule builds its own box; drop --structure, --ammonia, --density and --replicate")
    try:
        atoms = molecule(args.molecule)
    except KeyError:
        raise ConfigError(f"--molecule {args.molecule!r}: not in ASE's g2 set (e.g. NH3, H2O, CH4)") from None
    atoms.set_cell([args.box] * 3)
    atoms.center()
    atoms.pbc = True
    return atoms, f"--molecule {args.molecule}"


def main(args) -> int:
    from legato_jax.md.pimd import PIMDConfig, format_pimd_summary, run_pimd
    from legato_jax.model.io import resolve_model
    from legato_jax.outputs import writable

    if len(args.beads) > 1 and (args.out or args.log or args.beads_out):
        raise ConfigError("--out, --beads-out and --log go with one --beads value; run the convergence scan without them")
    for option in ("out", "log", "beads_out"):
        if getattr(args, option):
            writable(getattr(args, option), f"--{option.replace('_', '-')}")
    check_json_target(args)
    common = settings(args)
    configs = [PIMDConfig(beads=P, steps=args.steps, equilibration_steps=args.equilibrate, thermostat=args.thermostat,
                          trpmd=args.trpmd, tau_fs=args.tau, pile_lambda=args.pile_lambda, seed=args.seed,
                          skin=args.skin, every=args.log_every, chunk_steps=args.chunk, traj_every=args.traj_every,
                          beads_every=args.beads_every, health=args.health,
                          precision=args.precision, **common) for P in args.beads]
    atoms, where = structure(args)
    potential, params, _ = resolve_model(args.model)
    summaries = []
    for cfg in configs:
        result = run_pimd(potential, params, atoms, cfg, thermo_path=args.log, traj_path=args.out, beads_path=args.beads_out,
                          progress=not args.no_progress and sys.stderr.isatty(), name=model_name(args.model),
                          where=where)
        summaries.append(result.summary)
        if len(configs) > 1:
            print(format_pimd_summary(result.summary), file=sys.stderr, flush=True)
    if len(summaries) == 1:
        emit(args, summaries[0], format_pimd_summary(summaries[0]))
    else:
        emit(args, {"runs": summaries}, convergence_table(summaries))
    return 0


def convergence_table(summaries: list[dict]) -> str:
    """Per-atom quantum kinetic energy of each element (centroid virial, meV) against P."""
    symbols = [k.split("_")[1] for k in summaries[0] if k.startswith("kinetic_") and k.endswith("_eV")
               and k not in ("kinetic_virial_eV", "kinetic_primitive_eV")]
    from legato_jax.md.integrate import KB

    s0 = summaries[0]
    head = (f"Quantum kinetic energy per atom (centroid virial, meV; classical 3kT/2 = "
            f"{1.5 * KB * s0['temperature_K'] * 1e3:.2f}), {s0['model']}, {s0['n_atoms']} atoms, "
            f"{s0['temperature_K']:g} K, {s0['production_steps']} steps of {s0['dt_fs']} fs")
    lines = [head, "| P | " + " | ".join(f"{s} kinetic" for s in symbols) + " | " +
             " | ".join(f"{s} gyration (Å)" for s in symbols) + " | ms/step |",
             "|---|" + "---|" * (2 * len(symbols) + 1)]
    for s in summaries:
        cells = [f"{s[f'kinetic_{x}_eV'] * 1e3:.2f} ± {s[f'kinetic_{x}_eV_err'] * 1e3:.2f}" for x in symbols]
        cells += [f"{s[f'gyration_{x}_A']:.4f}" for x in symbols]
        lines.append(f"| {s['beads']} | " + " | ".join(cells) + f" | {s['step_s'] * 1e3:.1f} |")
    return "\n".join(lines)
