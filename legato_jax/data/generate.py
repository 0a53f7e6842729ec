"""Reference data for liquid ammonia: Langevin MD with GFN1-xTB (tblite) sampled into extxyz.

Each temperature is an independent segment: it starts from one relaxed random packing, is
thermalized, then sampled every `stride` steps. Segments append frames to their own part file
and checkpoint their full dynamical state (positions, momenta, RNG) after every frame, so an
interrupted run resumes without duplicating or losing frames. When every segment is complete
the parts are joined, in temperature order, into the output file.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import fcntl
import json
import multiprocessing
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from ase import Atoms, units
from ase.io import read, write

from legato_jax.analysis.timeseries import block_standard_error
from legato_jax.data.ammonia import molecules_intact, random_ammonia_packing
from legato_jax.data.label import labelled_copy, reference_calculator
from legato_jax.errors import ConfigError
from legato_jax.outputs import atomic_write_text

_K_B = units.kB  # eV/K


@dataclass(frozen=True)
class AmmoniaGenConfig:
    """Settings of `legato data generate-ammonia` (units: Å, fs, K, g/cm^3)."""

    output: str = "data/ammonia.extxyz"
    n_molecules: int = 16
    density: float = 0.68
    temperatures: tuple[float, ...] = (150.0, 200.0, 250.0, 300.0, 350.0, 400.0)
    frames_per_temperature: int = 250
    stride: int = 10
    timestep: float = 0.5
    thermalize_steps: int = 600
    friction: float = 0.02  # 1/fs
    seed: int = 0
    method: str = "GFN1-xTB"
    relax_fmax: float = 0.2
    relax_steps: int = 200
    block_frames: int = 10  # block length for the standard error of the mean temperature

    def validate(self) -> None:
        checks = {
            "n_molecules": self.n_molecules >= 1,
            "density": self.density > 0,
            "temperatures": len(self.temperatures) > 0 and all(t > 0 for t in self.temperatures),
            "frames_per_temperature": self.frames_per_temperature >= 1,
            "stride": self.stride >= 1,
            "timestep": self.timestep > 0,
            "thermalize_steps": self.thermalize_steps >= 0,
            "friction": self.friction > 0,
        }
        for key, ok in checks.items():
            if not ok:
                raise ConfigError(f"invalid --{key.replace('_', '-')}: {getattr(self, key)!r}")

    def physics(self) -> dict:
        """The settings that determine the frames (output path excluded)."""
        d = dataclasses.asdict(self)
        d.pop("output")
        d.pop("block_frames")
        d["temperatures"] = list(self.temperatures)
        return d


@dataclass
class SegmentReport:
    temperature: float
    frames: int
    mean_temperature: float
    std_temperature: float
    stderr_temperature: float
    seconds_per_frame: float
    intact_fraction: float
    thermostat_ok: bool = field(default=True)


def _parts_dir(cfg: AmmoniaGenConfig) -> Path:
    return Path(str(cfg.output) + ".parts")


def kinetic_temperature(atoms: Atoms) -> float:
    """Temperature from the kinetic energy with 3N - 3 degrees of freedom (COM is fixed)."""
    dof = 3 * len(atoms) - 3
    return 2.0 * atoms.get_kinetic_energy() / (dof * _K_B)


def _relaxed_start(cfg: AmmoniaGenConfig) -> Atoms:
    path = _parts_dir(cfg) / "relaxed.extxyz"
    if path.exists():
        return read(path)
    from ase.optimize import FIRE

    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 10**6]))
    atoms = random_ammonia_packing(cfg.n_molecules, cfg.density, rng)
    atoms.calc = reference_calculator(cfg.method)
    FIRE(atoms, logfile=None).run(fmax=cfg.relax_fmax, steps=cfg.relax_steps)
    if not molecules_intact(atoms):
        raise ConfigError("relaxation broke a molecule; try another --seed or a lower --density")
    atoms.wrap()
    clean = Atoms(atoms.symbols, atoms.positions, cell=atoms.cell, pbc=True)
    tmp = path.with_name(path.name + ".tmp")
    write(tmp, clean, format="extxyz")
    os.replace(tmp, path)
    return clean


def _load_state(path: Path) -> dict | None:
    if not path.exists():
        return None
    with open(path) as fh:
        return json.load(fh)


@contextlib.contextmanager
def segment_lock(parts: Path, index: int):
    """Hold the segment's lock file while writing it: a second live writer (a run still going,
    or orphaned workers of a killed one) is refused instead of appending frames alongside."""
    path = parts / f"segment{index:02d}.lock"
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            owner = fh.read().strip() or "unknown"
            raise ConfigError(f"{path}: segment {index} is being written by another live process (pid {owner}); "
                              f"wait for it to finish or stop it, then run again") from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _die_with_parent(parent: int) -> None:
    """Pool initializer: a worker is killed with its parent (Linux), so a killed run leaves no
    orphans writing on; elsewhere the segment locks still refuse a second writer."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)


def run_segment(cfg: AmmoniaGenConfig, index: int, max_new_frames: int | None = None) -> dict:
    """Run (or resume) the segment at temperature `cfg.temperatures[index]`; returns its state."""
    with segment_lock(_parts_dir(cfg), index):
        return _run_segment(cfg, index, max_new_frames)


def _run_segment(cfg: AmmoniaGenConfig, index: int, max_new_frames: int | None) -> dict:
    from ase.constraints import FixCom
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import Stationary, thermalize_momenta

    parts = _parts_dir(cfg)
    temperature = float(cfg.temperatures[index])
    state_path = parts / f"segment{index:02d}.state.json"
    frames_path = parts / f"segment{index:02d}.extxyz"
    state = _load_state(state_path)
    start = _relaxed_start(cfg)
    atoms = start.copy()
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, index]))
    if state is None:
        thermalize_momenta(atoms, temperature_K=temperature, rng=rng)
        Stationary(atoms)
        state = {
            "temperature": temperature,
            "thermalized_steps": 0,
            "frames": 0,
            "bytes": 0,
            "frame_temperatures": [],
            "intact": [],
            "seconds": 0.0,
        }
    else:
        atoms.positions = np.asarray(state["positions"])
        atoms.set_momenta(np.asarray(state["momenta"]))
        rng.bit_generator.state = state["rng"]
    # Drop anything written after the last checkpoint (a frame whose state was not saved,
    # or a partial write), so that resuming never duplicates a frame.
    with open(frames_path, "a") as fh:
        fh.truncate(state["bytes"])

    atoms.set_constraint(FixCom())
    atoms.calc = reference_calculator(cfg.method)
    dyn = Langevin(
        atoms,
        timestep=cfg.timestep * units.fs,
        temperature_K=temperature,
        friction=cfg.friction / units.fs,
        fixcm=False,
        rng=rng,
    )

    def checkpoint() -> None:
        state.update(
            positions=atoms.get_positions().tolist(),
            momenta=atoms.get_momenta().tolist(),
            rng=rng.bit_generator.state,
        )
        atomic_write_text(state_path, json.dumps(state))

    while state["thermalized_steps"] < cfg.thermalize_steps:
        n = min(100, cfg.thermalize_steps - state["thermalized_steps"])
        dyn.run(n)
        state["thermalized_steps"] += n
        checkpoint()

    new = 0
    while state["frames"] < cfg.frames_per_temperature:
        if max_new_frames is not None and new >= max_new_frames:
            break
        t0 = time.perf_counter()
        dyn.run(cfg.stride)
        step = cfg.thermalize_steps + (state["frames"] + 1) * cfg.stride
        frame = labelled_copy(
            atoms,
            {
                "config_type": f"nh3_liquid_{temperature:g}K",
                "temperature_target": temperature,
                "temperature_kinetic": kinetic_temperature(atoms),
                "segment": index,
                "md_step": step,
                "time_fs": step * cfg.timestep,
                "seed": cfg.seed,
                "method": cfg.method,
            },
        )
        with open(frames_path, "a") as fh:
            write(fh, frame, format="extxyz")
            fh.flush()
            os.fsync(fh.fileno())
            state["bytes"] = fh.tell()
        state["frames"] += 1
        state["frame_temperatures"].append(kinetic_temperature(atoms))
        state["intact"].append(molecules_intact(atoms))
        state["seconds"] += time.perf_counter() - t0
        new += 1
        checkpoint()
    return state


def _run_segment_job(args) -> dict:
    cfg, index, max_new = args
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    return run_segment(cfg, index, max_new)


def segment_report(cfg: AmmoniaGenConfig, state: dict) -> SegmentReport:
    """Mean kinetic temperature of the sampled frames; the thermostat holds the target when the
    mean is within 3 standard errors (plus 1 % for residual bias of the finite time step)."""
    temps = np.asarray(state["frame_temperatures"], dtype=float)
    target = state["temperature"]
    mean = float(temps.mean()) if temps.size else float("nan")
    stderr = block_standard_error(temps, cfg.block_frames) if temps.size else float("nan")
    return SegmentReport(
        temperature=target,
        frames=state["frames"],
        mean_temperature=mean,
        std_temperature=float(temps.std()) if temps.size else float("nan"),
        stderr_temperature=stderr,
        seconds_per_frame=state["seconds"] / max(state["frames"], 1),
        intact_fraction=float(np.mean(state["intact"])) if state["intact"] else float("nan"),
        thermostat_ok=bool(abs(mean - target) <= 3 * stderr + 0.01 * target),
    )


def _check_settings(cfg: AmmoniaGenConfig) -> None:
    parts = _parts_dir(cfg)
    parts.mkdir(parents=True, exist_ok=True)
    path = parts / "settings.json"
    settings = cfg.physics()
    if path.exists():
        with open(path) as fh:
            old = json.load(fh)
        diff = {k: (old.get(k), v) for k, v in settings.items() if old.get(k) != v}
        if diff:
            listing = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in diff.items())
            raise ConfigError(
                f"{parts} holds an interrupted run made with other settings ({listing}); "
                f"rerun with the same options to resume, or delete {parts} to start over"
            )
    else:
        atomic_write_text(path, json.dumps(settings, indent=1))


def generate_ammonia(
    cfg: AmmoniaGenConfig,
    workers: int = 1,
    max_new_frames: int | None = None,
    progress: bool = True,
) -> list[SegmentReport]:
    """Generate (or resume) the dataset; writes `cfg.output` once every segment is complete.

    `max_new_frames` stops each segment after that many new frames (for chunked runs and tests);
    rerunning the same command continues where it stopped.
    """
    cfg.validate()
    if Path(cfg.output).exists():
        raise ConfigError(f"{cfg.output} already exists; choose another --output or remove it")
    _check_settings(cfg)
    _relaxed_start(cfg)
    parts = _parts_dir(cfg)
    jobs = [(cfg, k, max_new_frames) for k in range(len(cfg.temperatures))]
    steps_per_segment = cfg.thermalize_steps + cfg.frames_per_temperature * cfg.stride

    stop = threading.Event()

    def poll() -> None:
        from tqdm import tqdm

        bar = tqdm(
            total=len(jobs) * steps_per_segment, unit="step", desc="generate-ammonia",
            disable=not progress,
        )
        while True:
            steps = frames = 0
            for k in range(len(jobs)):
                st = _load_state_quiet(parts / f"segment{k:02d}.state.json") or {}
                frames += st.get("frames", 0)
                steps += st.get("thermalized_steps", 0) + st.get("frames", 0) * cfg.stride
            bar.update(steps - bar.n)
            bar.set_postfix(frames=frames, refresh=False)
            if stop.wait(2.0):
                break
        bar.close()

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    try:
        if workers <= 1:
            states = [run_segment(*job) for job in jobs]
        else:
            ctx = multiprocessing.get_context("spawn")
            with ctx.Pool(workers, initializer=_die_with_parent, initargs=(os.getpid(),)) as pool:
                states = pool.map(_run_segment_job, jobs, chunksize=1)
    finally:
        stop.set()
        poller.join()

    reports = [segment_report(cfg, st) for st in states]
    if all(st["frames"] >= cfg.frames_per_temperature for st in states):
        _join_parts(cfg)
        atomic_write_text(
            Path(str(cfg.output) + ".report.json"),
            json.dumps(
                {"settings": cfg.physics(), "segments": [dataclasses.asdict(r) for r in reports]},
                indent=1,
            ),
        )
    return reports


def _load_state_quiet(path: Path) -> dict | None:
    try:
        return _load_state(path)
    except (OSError, json.JSONDecodeError):
        return None


def _join_parts(cfg: AmmoniaGenConfig) -> None:
    parts = _parts_dir(cfg)
    out = Path(cfg.output)
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "wb") as dst:
        for k in range(len(cfg.temperatures)):
            with open(parts / f"segment{k:02d}.extxyz", "rb") as src:
                dst.write(src.read())
    os.replace(tmp, out)
