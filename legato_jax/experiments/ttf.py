"""The time-to-failure experiment: replicas of liquid ammonia at several sizes run with each model
until the failure criteria fire; per size and criterion the failure times with bootstrap
confidence intervals, and per model and criterion the fidelity-scaling exponent beta."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import jax
import numpy as np

from legato_jax import __version__
from legato_jax.data.graph import TypeMap
from legato_jax.errors import ConfigError
from legato_jax.experiments.failure import CRITERIA, FailureCriteria
from legato_jax.experiments.replicas import ReplicaResult, run_replicas
from legato_jax.experiments.fidelity import (PAPER_BETA_DIFFERENCE, compare_betas, fit_beta, replicas_to_resolve,
                                             simulated_power)
from legato_jax.md.energy import model_energy
from legato_jax.md.integrate import Stage
from legato_jax.md.run import with_precision
from legato_jax.data.ammonia import AMMONIA_CELL_MOLECULES, ATOMS_PER_MOLECULE, liquid_ammonia
from legato_jax.model.potential import Potential
from legato_jax.outputs import atomic_write_text

@dataclass(frozen=True)
class TTFConfig:
    """One protocol for every model and size."""

    sizes: tuple[int, ...]  # atoms; multiples of the 64-atom cell
    replicas: int
    stages: tuple[Stage, ...]
    temperature_K: float  # initial velocities
    hydrogen_mass: float | None = None
    criteria: tuple[str, ...] = CRITERIA  # reported, and a replica runs until all of them fired
    thresholds: FailureCriteria = field(default_factory=FailureCriteria)
    density: float | None = None  # g/cm^3; None keeps the shipped cell's 0.68
    every: int = 10
    chunk_steps: int = 1000
    seed: int = 0
    precision: str | None = None

    def __post_init__(self) -> None:
        cell_atoms = AMMONIA_CELL_MOLECULES * ATOMS_PER_MOLECULE
        bad = [n for n in self.sizes if n < cell_atoms or n % cell_atoms]
        if not self.sizes or bad:
            raise ConfigError(f"--sizes {list(self.sizes)}: each size is a number of atoms, a multiple of the "
                              f"{cell_atoms}-atom ammonia cell (e.g. 512 = 64 x 2^3, 1728 = 64 x 3^3)")
        if len(set(self.sizes)) != len(self.sizes):
            raise ConfigError(f"--sizes {list(self.sizes)} repeats a size")
        if self.replicas < 1:
            raise ConfigError(f"--replicas must be >= 1, got {self.replicas}")
        unknown = sorted(set(self.criteria) - set(CRITERIA))
        if unknown or not self.criteria:
            raise ConfigError(f"--criteria {unknown or '(none)'}: choose from {list(CRITERIA)}")
        if self.every < 1 or self.chunk_steps < self.every:
            raise ConfigError(f"--every must be >= 1 and --chunk >= --every, got --every {self.every} "
                              f"--chunk {self.chunk_steps}")
        for s in self.stages:
            if s.steps % self.every:
                raise ConfigError(f"a stage of {s.steps} steps is not a multiple of the check interval --every {self.every}")
        if self.chunk_steps % self.every:
            raise ConfigError(f"--chunk {self.chunk_steps} is not a multiple of --every {self.every}")

    @property
    def steps(self) -> int:
        return sum(s.steps for s in self.stages)

    def protocol(self) -> dict:
        return {"stages": [dataclasses.asdict(s) for s in self.stages], "temperature_K": self.temperature_K,
                "hydrogen_mass": self.hydrogen_mass, "max_steps": self.steps, "replicas": self.replicas,
                "sizes": list(self.sizes), "criteria": list(self.criteria), "every": self.every,
                "thresholds": dataclasses.asdict(self.thresholds), "density": self.density, "seed": self.seed}


def bootstrap_ci(values: np.ndarray, stat: Callable, n_boot: int = 1000, confidence: float = 0.95,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of `stat` over resampled replicas."""
    values = np.asarray(values, float)
    if len(values) < 2:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    boot = [stat(values[rng.integers(0, len(values), len(values))]) for _ in range(n_boot)]
    q = (1 - confidence) / 2
    lo, hi = np.quantile(boot, [q, 1 - q])
    return float(lo), float(hi)


def summarize(steps: np.ndarray, time_ps: np.ndarray, failed: np.ndarray) -> dict:
    """Failure times of one size and criterion. Censored replicas enter at the time they stopped, so
    the mean is a lower bound when any are censored; the median is exact while under half are."""
    return {
        "steps": [int(s) for s in steps], "time_ps": [float(t) for t in time_ps], "failed": [bool(f) for f in failed],
        "n_failed": int(failed.sum()), "censored_fraction": float(1 - failed.mean()),
        "mean_ps": float(np.mean(time_ps)), "mean_ci_ps": bootstrap_ci(time_ps, np.mean),
        "median_ps": float(np.median(time_ps)), "median_ci_ps": bootstrap_ci(time_ps, np.median),
        "median_exact": bool(failed.mean() > 0.5),
    }


def run_size(potential: Potential, params, n_atoms: int, cfg: TTFConfig, on_chunk: Callable | None = None,
             checkpoint: str | Path | None = None, checkpoint_key: str = "") -> ReplicaResult:
    """All replicas of one model at one size (continued from `checkpoint` if it holds this run)."""
    atoms = liquid_ammonia(n_atoms // ATOMS_PER_MOLECULE, cfg.density)
    species = TypeMap(tuple(potential.config.species)).indices(atoms.numbers, f"--sizes {n_atoms}")
    double = (cfg.precision or potential.config.dtype) == "float64"
    with jax.enable_x64(True) if double else contextlib.nullcontext():
        potential, params = with_precision(potential, params, cfg.precision)
        system = model_energy(potential, params, species, atoms.cell.array,
                              where=f"--sizes {n_atoms} ({len(atoms)} atoms, cell {atoms.cell.lengths().round(2).tolist()} Å)")
        return run_replicas(system, atoms, cfg.stages, cfg.replicas, seed=cfg.seed, temperature_K=cfg.temperature_K,
                            hydrogen_mass=cfg.hydrogen_mass, criteria=cfg.thresholds, stop_on=cfg.criteria,
                            every=cfg.every, chunk_steps=cfg.chunk_steps, on_chunk=on_chunk,
                            checkpoint=checkpoint, checkpoint_key=checkpoint_key)


def replica_data(sizes: dict, criterion: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(sizes, times in ps, failed) of every replica of one model under one criterion."""
    n = np.concatenate([[int(size)] * len(res[criterion]["time_ps"]) for size, res in sizes.items()])
    t = np.concatenate([res[criterion]["time_ps"] for res in sizes.values()])
    f = np.concatenate([res[criterion]["failed"] for res in sizes.values()]).astype(bool)
    return n, t, f


def fit_model(sizes: dict, criteria: Sequence[str]) -> dict:
    """beta per criterion from one model's per-size summaries (None with a reason when not identifiable)."""
    out = {}
    for c in criteria:
        try:
            fit = fit_beta(*replica_data(sizes, c))
        except ValueError as exc:
            out[c] = {"beta": None, "reason": str(exc)}
            continue
        out[c] = {"beta": fit.beta, "beta_ci": list(fit.beta_ci), "log_prefactor": fit.log_prefactor, "sigma": fit.sigma, "n_failed": fit.n_failed,
                  "n_censored": fit.n_censored, "method": fit.method}
    return out


def beta_differences(models: dict, criteria: Sequence[str], limit_ps: float = np.inf) -> dict:
    """For each model after the first, per criterion: beta_first - beta_model with its bootstrap
    interval, the likelihood-ratio test of a shared beta and the design's power (None with a reason
    when not identifiable)."""
    names = list(models)
    out = {}
    for other in names[1:]:
        out[other] = {}
        for c in criteria:
            try:
                d = compare_betas(replica_data(models[names[0]]["sizes"], c), replica_data(models[other]["sizes"], c))
            except ValueError as exc:
                out[other][c] = {"difference": None, "reason": str(exc)}
                continue
            out[other][c] = dataclasses.asdict(d) | {"of": f"{names[0]} - {other}"}
            out[other][c]["power"] = power_estimate(models[names[0]], models[other], c, limit_ps)
    return out


def power_estimate(a: dict, b: dict, criterion: str, limit_ps: float, difference: float = PAPER_BETA_DIFFERENCE
                   ) -> dict:
    """How well this design resolves a beta difference of `difference` (the paper's 0.29 - 0.14),
    with the two models' fitted scatter: the replicas per size and model that 80 % power needs
    without censoring, and the simulated power of the present replica count with this step limit."""
    fa, fb = a["beta"][criterion], b["beta"][criterion]
    sizes = [int(n) for n in a["sizes"]]
    replicas = min(len(a["sizes"][str(n)][criterion]["time_ps"]) for n in sizes)
    return {"difference": difference, "sigmas": [fa["sigma"], fb["sigma"]], "replicas": replicas,
            "replicas_needed": replicas_to_resolve(sizes, fa["sigma"], fb["sigma"], difference),
            "power": simulated_power(sizes, replicas, fb["beta"] + difference, fb["beta"], fa["sigma"], fb["sigma"],
                                     limit=limit_ps, log_prefactor=fb["log_prefactor"])}


def model_fingerprint(potential: Potential, params) -> str:
    """A short hash of a model (configuration, fitted constants, parameters): a stored part is
    reused only for the same model."""
    digest = hashlib.sha256(repr((potential.config, potential.stats)).encode())
    for leaf in jax.tree_util.tree_leaves(params):
        digest.update(np.ascontiguousarray(np.asarray(leaf)).tobytes())
    return digest.hexdigest()[:16]


def _part_key(cfg: TTFConfig, fingerprint: str, n: int) -> dict:
    """What decides one (model, size) part's result: the protocol less the list of sizes."""
    protocol = {k: v for k, v in cfg.protocol().items() if k != "sizes"}
    return {"protocol": protocol, "model": fingerprint, "atoms": n, "chunk_steps": cfg.chunk_steps,
            "precision": cfg.precision, "legato_jax": __version__}


def run_ttf(models: dict[str, tuple[Potential, object]], cfg: TTFConfig, log: Callable[[str], None] = print,
            out_dir: str | Path | None = None) -> dict:
    """The whole experiment: {"protocol", "models": {name: {"sizes": {N: {criterion: summary}},
    "beta": {criterion: fit}, "cost": {N: {"wall_s", "nl_reallocations"}}}}, "beta_differences"}.
    With `out_dir`, each finished (model, size) is written there as it ends and reused by a later
    call with the same protocol and model, and the one in progress is checkpointed there after
    every chunk (NAME_N.checkpoint.npz), so an interrupted experiment continues where it stopped."""
    out = {"protocol": cfg.protocol(), "models": {}}
    for name, (potential, params) in models.items():
        sizes, cost = {}, {}
        fingerprint = model_fingerprint(potential, params) if out_dir is not None else ""
        for n in cfg.sizes:
            part = None if out_dir is None else Path(out_dir) / f"{name.replace('/', '_')}_{n}.json"
            key = None if part is None else _part_key(cfg, fingerprint, n)
            if part is not None and part.exists():
                try:
                    stored = json.loads(part.read_text())
                except json.JSONDecodeError:
                    stored = {}
                if stored.get("key") == json.loads(json.dumps(key)):
                    log(f"  {name} N={n}: reusing {part}")
                    sizes[str(n)], cost[str(n)] = stored["summary"], stored["cost"]
                    continue
                log(f"  {name} N={n}: {part} holds another protocol or model (or is unreadable); running again")
            start = time.perf_counter()

            def progress(step, first, n=n, start=start):
                fired = {c: int((first[:, CRITERIA.index(c)] >= 0).sum()) for c in cfg.criteria}
                log(f"  {name} N={n}: step {step}/{cfg.steps}, {time.perf_counter() - start:.0f} s, failed {fired}")

            checkpoint = None if part is None else part.with_name(part.stem + ".checkpoint.npz")
            if checkpoint is not None:
                checkpoint.parent.mkdir(parents=True, exist_ok=True)
            if checkpoint is not None and checkpoint.exists():
                log(f"  {name} N={n}: continuing from {checkpoint} if it holds this run")
            res = run_size(potential, params, n, cfg, progress, checkpoint,
                           "" if key is None else json.dumps(key, sort_keys=True))
            sizes[str(n)] = {c: summarize(*res.times(c)) for c in cfg.criteria}
            cost[str(n)] = {"wall_s": res.wall_s, "nl_reallocations": res.reallocations, "compiles": res.compiles}
            if part is not None:
                part.parent.mkdir(parents=True, exist_ok=True)
                atomic_write_text(part, json.dumps({"key": key, "summary": sizes[str(n)], "cost": cost[str(n)]}))
                checkpoint.unlink(missing_ok=True)
        out["models"][name] = {"sizes": sizes, "beta": fit_model(sizes, cfg.criteria), "cost": cost}
    out["beta_differences"] = beta_differences(out["models"], cfg.criteria, _time_limit_ps(out["protocol"]))
    return out


def format_table(result: dict) -> str:
    """One row per model, size and criterion, then beta per model and criterion."""
    p = result["protocol"]
    w = max(len(name) for name in result["models"]) + 2
    lines = [f"time to failure: {p['replicas']} replicas per size, at most {p['max_steps']} steps "
             f"({_time_limit_ps(p):.3g} ps), checks every {p['every']} steps",
             f"{'model':<{w}}{'atoms':>7}  {'criterion':<14}{'failed':>8}  {'median ps [95% CI]':<26}{'mean ps (lower bound if censored)':>36}"]
    for name, m in result["models"].items():
        for n, per in m["sizes"].items():
            for c in p["criteria"]:
                s = per[c]
                med = f"{s['median_ps']:.3g} [{_fmt(s['median_ci_ps'][0])}, {_fmt(s['median_ci_ps'][1])}]"
                if not s["median_exact"]:
                    med = f">= {s['median_ps']:.3g} (censored)"
                mean = f"{s['mean_ps']:.3g} [{_fmt(s['mean_ci_ps'][0])}, {_fmt(s['mean_ci_ps'][1])}]"
                lines.append(f"{name:<{w}}{n:>7}  {c:<14}{s['n_failed']:>4}/{len(s['failed']):<3}  {med:<26}{mean:>36}")
    lines.append("beta of t_failure ~ N^-beta (log-normal AFT fit with right censoring, 95% bootstrap CI)")
    for name, m in result["models"].items():
        for c, b in m["beta"].items():
            text = (f"{b['beta']:.3f} [{b['beta_ci'][0]:.3f}, {b['beta_ci'][1]:.3f}]" if b["beta"] is not None
                    else f"n/a ({b['reason']})")
            lines.append(f"  {name:<{w}}{c:<14}{text}")
    return "\n".join(lines)


def _time_limit_ps(protocol: dict) -> float:
    return sum(s["steps"] * s["dt_fs"] for s in protocol["stages"]) / 1000.0


def _fmt(x: float) -> str:
    return "nan" if not np.isfinite(x) else f"{x:.3g}"


def compare_models(result: dict) -> str:
    """Each later model against the first: ratio of median failure times per size and criterion,
    marked significant only where the 95% intervals do not overlap; beta likewise."""
    names = list(result["models"])
    if len(names) < 2:
        return ""
    base = result["models"][names[0]]
    lines = []
    for other in names[1:]:
        m = result["models"][other]
        lines.append(f"{other} vs {names[0]}: ratio of median times to failure (> 1: {other} lasts longer); "
                     f"'*' where the 95% intervals do not overlap; the beta difference with its 95% bootstrap interval")
        for c in result["protocol"]["criteria"]:
            parts = []
            for n in m["sizes"]:
                a, b = base["sizes"][n][c], m["sizes"][n][c]
                star = "*" if intervals_separate(a["median_ci_ps"], b["median_ci_ps"]) else ""
                star += "" if a["median_exact"] and b["median_exact"] else " (censored)"
                parts.append(f"{n}: {b['median_ps'] / a['median_ps']:.2f}{star}")
            d = result.get("beta_differences", {}).get(other, {}).get(c)
            beta = "beta difference n/a"
            if d is not None and d["difference"] is not None:
                beta = (f"beta {names[0]} - {other} = {d['difference']:.2f} [{d['difference_ci'][0]:.2f}, "
                        f"{d['difference_ci'][1]:.2f}], shared-beta LR test p = {d['p_value']:.3g}")
                pw = d.get("power")
                if pw:
                    beta += (f"; to resolve {pw['difference']:.2f} at 80 % power: {pw['replicas_needed']} replicas per "
                             f"size (power with {pw['replicas']}: {pw['power']:.2f})")
            lines.append(f"  {c:<14}" + ", ".join(parts) + f"; {beta}")
    return "\n".join(lines)


def intervals_separate(ci_a, ci_b) -> bool:
    """Whether two finite (low, high) intervals do not overlap: the `*` of the comparison tables."""
    if not all(np.isfinite(list(ci_a) + list(ci_b))):
        return False
    return ci_a[1] < ci_b[0] or ci_b[1] < ci_a[0]
