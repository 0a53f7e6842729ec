"""`legato md`: molecular dynamics with a trained model on jax-md."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from legato_jax.cli.options import add_json_option, check_json_target, emit, nonnegative_float, positive_float, positive_int
from legato_jax.errors import ConfigError

if TYPE_CHECKING:
    from legato_jax.md.run import MDConfig


DEFAULT_MOLECULES = 128  # the demo's box: 512 atoms


def register(sub) -> None:
    p = sub.add_parser("md", help="run NVE / Nose-Hoover / Langevin MD with a trained model")
    p.add_argument("--model", default="legato",
                   help="model file (.npz), run directory, or a shipped model's name (allegro, legato)")
    add_structure_arguments(p, restart=True)
    p.add_argument("--preset", help="a shipped preset (legato_jax/md/presets: paper-code, paper-text, demo, stressed) or a YAML path")
    p.add_argument("--ensemble", choices=["nve", "nose-hoover", "langevin", "npt"],
                   help="single-stage run instead of a preset (npt: Nose-Hoover thermostat and isotropic barostat)")
    p.add_argument("--pressure", type=float, metavar="BAR", help="npt: target pressure in bar")
    p.add_argument("--barostat-tau", type=positive_float, default=1000.0,
                   help="npt: barostat time in fs (LAMMPS' Pdamp)")
    p.add_argument("--temperature", type=nonnegative_float, help="K: initial velocities and thermostat target")
    p.add_argument("--dt", type=positive_float, help="time step in fs (single-stage runs)")
    p.add_argument("--tau", type=positive_float, default=100.0, help="thermostat time in fs (Nose-Hoover Tdamp, Langevin 1/gamma)")
    p.add_argument("--steps", type=positive_int, help="total steps (a preset's open-ended stage takes what is left)")
    p.add_argument("--hydrogen-mass", type=positive_float, help="amu (the paper: 2.014); default: the preset's or 1.008")
    p.add_argument("--seed", type=int, default=0, help="seed of the initial velocities and Langevin noise")
    p.add_argument("--precision", choices=["float32", "float64"], help="default: the model's")
    p.add_argument("--skin", type=nonnegative_float, default=0.5, help="neighbour-list skin in Å")
    p.add_argument("--log-every", type=positive_int, default=10, help="steps between thermo rows")
    p.add_argument("--traj-every", type=positive_int, help="steps between trajectory frames (default: --log-every)")
    p.add_argument("--chunk", type=positive_int, default=1000, help="steps per compiled chunk")
    p.add_argument("--out", help="trajectory extxyz (positions, momenta, energy, forces)")
    p.add_argument("--log", help="thermo CSV")
    p.add_argument("--checkpoint", metavar="FILE",
                   help="write the full state (.npz, full precision, thermostat included) after every chunk; "
                        "continue with --restart FILE")
    p.add_argument("--domains", type=positive_int, nargs=3, metavar=("PX", "PY", "PZ"),
                   help="split the box into PX x PY x PZ domains: one per device of this process, or one per "
                        "rank when launched with mpirun -n PX*PY*PZ (nve and nose-hoover stages)")
    p.add_argument("--rank-timeout", type=nonnegative_float, default=900.0,
                   help="under mpirun: seconds without a finished block of --log-every steps before a rank "
                        "is ended, and with it the job (another rank died or hangs); 0 turns the watchdog off")
    p.add_argument("--health", choices=["stop", "warn", "off"], default="stop",
                   help="stop (exit status 3) or only warn when the run turns unphysical: temperature above 10x "
                        "the hotter of its targets and start (warn at 2x), a pair closer than 0.5x its covalent "
                        "radius sum (warn at 0.7x), conserved energy off by 0.1 eV/atom (warn at 0.01); "
                        "non-finite energies and a neighbour list that missed a pair always stop")
    add_json_option(p, "the summary")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (it shows only on a terminal anyway)")
    p.set_defaults(func=main)


def add_structure_arguments(p, restart: bool) -> None:
    """Where the atoms come from: a file, a liquid-ammonia box, or (with `restart`) a checkpoint."""
    what = p.add_mutually_exclusive_group()
    what.add_argument("--structure", help="any ASE-readable file with a periodic cell (last frame used)")
    what.add_argument("--ammonia", type=positive_int, metavar="N_MOLECULES",
                      help="liquid ammonia from the shipped equilibrated 16-molecule cell (N = 16 x a x b x c; "
                           f"{DEFAULT_MOLECULES} when no --structure{' or --restart' if restart else ''} is given)")
    if restart:
        what.add_argument("--restart", metavar="FILE",
                          help="continue exactly from a checkpoint (--checkpoint) or a trajectory frame (--out): "
                               "positions, momenta, masses, and the thermostat where a checkpoint carries it")
    p.add_argument("--frame", type=int, default=-1,
                   help=f"frame of --structure{' or --restart' if restart else ''} (default: last)")
    p.add_argument("--density", type=positive_float, help="rescale the ammonia box to this density (g/cm^3)")
    p.add_argument("--replicate", type=positive_int, nargs=3, metavar=("A", "B", "C"), help="repeat the cell A x B x C")


def build_config(args) -> "MDConfig":
    from legato_jax.md.integrate import Stage
    from legato_jax.md.config import stderr_note
    from legato_jax.md.run import MDConfig, load_preset

    from legato_jax.md.health import HealthLimits

    common = dict(seed=args.seed, skin=args.skin, every=args.log_every, chunk_steps=args.chunk,
                  traj_every=args.traj_every, precision=args.precision, health=HealthLimits(args.health))
    if args.preset and args.ensemble:
        raise ConfigError("give either --preset or --ensemble (with --temperature, --dt, --steps), not both")
    if args.preset:
        kw = load_preset(args.preset, args.steps, args.temperature, note=stderr_note)
        if args.hydrogen_mass is not None:
            kw["hydrogen_mass"] = args.hydrogen_mass
        return MDConfig(**kw, **common)
    if not args.ensemble:
        raise ConfigError("give --preset NAME or --ensemble nve|nose-hoover|langevin|npt")
    if args.temperature is None and args.restart and args.ensemble == "nve":
        args.temperature = restart_temperature(args)
    missing = [f"--{k}" for k in ("temperature", "dt", "steps") if getattr(args, k) is None]
    if missing:
        raise ConfigError(f"--ensemble {args.ensemble} needs {' '.join(missing)}")
    if (args.ensemble == "npt") != (args.pressure is not None):
        raise ConfigError("--pressure BAR goes with --ensemble npt, and npt needs it (1 bar: ambient)")
    stage = Stage(args.ensemble, args.steps, args.dt, args.temperature, args.tau, args.pressure, args.barostat_tau)
    return MDConfig((stage,), args.temperature, hydrogen_mass=args.hydrogen_mass, **common)


def restart_temperature(args) -> float:
    """The kinetic temperature of the state --restart continues (an NVE run's reference)."""
    from ase import units

    atoms = load_restart(args).atoms
    return float(2 * atoms.get_kinetic_energy() / (3 * len(atoms) * units.kB))


def load_restart(args):
    from legato_jax.md.restart import read_restart

    if getattr(args, "_restart", None) is None:
        args._restart = read_restart(args.restart, args.frame)
    return args._restart


def build_structure(args):
    from legato_jax.data.ammonia import liquid_ammonia, set_density
    from legato_jax.md.systems import load_structure, replicate

    if getattr(args, "restart", None):
        for option in ("density", "replicate"):
            if getattr(args, option) is not None:
                raise ConfigError(f"--restart continues a state as it is; drop --{option}")
        return load_restart(args), f"{args.restart}, frame {args.frame}"
    if args.structure is not None:
        atoms, where = load_structure(args.structure, args.frame), f"{args.structure}, frame {args.frame}"
        if args.density is not None:
            atoms = set_density(atoms, args.density)
    else:
        n = DEFAULT_MOLECULES if args.ammonia is None else args.ammonia
        atoms, where = liquid_ammonia(n, args.density), f"--ammonia {n}"
    if args.replicate:
        atoms = replicate(atoms, args.replicate)
    return atoms, where


def model_name(path: str) -> str:
    """'models/legato/best.npz' -> 'legato'; 'runs/x' -> 'x'; 'm.npz' -> 'm'."""
    p = Path(path)
    return p.parent.name if p.name == "best.npz" else (p.name if p.is_dir() else p.stem)


def mpi_world_size() -> int:
    """Ranks of the job this process was started in by mpirun (1 when not under MPI)."""
    for key in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE"):  # MPICH (hydra, srun with PMI), Open MPI
        if os.environ.get(key, "").isdigit():
            return int(os.environ[key])
    return 1


def main(args) -> int:
    from legato_jax.outputs import writable

    cfg = build_config(args)
    if args.restart:
        from legato_jax.md.restart import check_masses

        option = "--hydrogen-mass" if args.hydrogen_mass is not None else f"preset {args.preset}'s hydrogen_mass"
        check_masses(load_restart(args), cfg.hydrogen_mass, option)
    if args.domains and any(s.ensemble == "npt" for s in cfg.stages):
        raise ConfigError("NPT runs on one domain for now; drop --domains")
    if args.domains and (args.restart or args.checkpoint):
        raise ConfigError("--restart and --checkpoint run on one domain for now; drop --domains")
    for option in ("out", "log", "checkpoint"):
        if getattr(args, option):
            writable(getattr(args, option), f"--{option}")
    check_json_target(args)
    if args.domains and mpi_world_size() > 1:
        return _main_mpi(args, cfg)
    if args.domains:
        from legato_jax.parallel.devices import request_host_devices

        request_host_devices(math.prod(args.domains))
    return _run(args, cfg)


def _run(args, cfg, comm=None) -> int:
    """One run on one domain, on `--domains` over this process's devices, or one domain per rank
    of `comm`; the summary is printed once (by rank 0)."""
    from legato_jax.md.run import format_summary, run_md
    from legato_jax.parallel.run import run_md_decomposed
    from legato_jax.model.io import resolve_model

    atoms, where = build_structure(args)
    potential, params, _ = resolve_model(args.model)
    common = dict(thermo_path=args.log, traj_path=args.out, progress=not args.no_progress and sys.stderr.isatty(),
                  name=model_name(args.model), where=where)
    if comm is not None:
        result = run_md_decomposed(potential, params, atoms, cfg, tuple(args.domains), comm=comm,
                                   rank_timeout_s=args.rank_timeout or None, **common)
    elif args.domains:
        result = run_md_decomposed(potential, params, atoms, cfg, tuple(args.domains), **common)
    else:
        result = run_md(potential, params, atoms, cfg, checkpoint_path=args.checkpoint, **common)
    if result is not None:
        emit(args, result.summary, format_summary(result.summary))
    return 0


def _main_mpi(args, cfg) -> int:
    """One domain per rank. A user error on any rank prints one line and aborts every rank, so
    that no rank is left waiting in an exchange."""
    from mpi4py import MPI

    from legato_jax.errors import LegatoError

    comm = MPI.COMM_WORLD
    try:
        return _run(args, cfg, comm)
    except (LegatoError, OSError) as exc:
        status = getattr(exc, "exit_status", 2)
        print(f"legato md: {'error' if status == 2 else 'stopped'}: rank {comm.Get_rank()}: {exc}", file=sys.stderr,
              flush=True)
        comm.Abort(status)
        return status
