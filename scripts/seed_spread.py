"""Averages of path-integral runs over independent seeds, and two sets of runs compared: the error of
a run's mean comes from the spread between seeds, which also holds the fluctuations slower than one
run resolves (docs/results.md: two 1.5 ps native runs differed by six of their in-run errors).

Each FILE is a summary JSON of `legato pimd --json` or `scripts/ipi_ammonia.py`.
Usage: python scripts/seed_spread.py --set native N0.json N1.json ... --set ipi I0.json I1.json ...
Prints, per quantity, each set's mean over its seeds with the standard error of that mean, and the
difference of the first two sets with Welch's t-test.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from scipy import stats

QUANTITIES = {  # key: (label, factor to the printed unit)
    "kinetic_H_eV": ("H kinetic, meV/atom", 1000.0),
    "kinetic_N_eV": ("N kinetic, meV/atom", 1000.0),
    "potential_eV": ("E_pot, eV", 1.0),
    "pressure_GPa": ("P, GPa", 1.0),
    "step_s": ("s/step", 1.0),
}


def load(paths: list[str]) -> dict[str, np.ndarray]:
    runs = []
    for path in paths:
        with open(path) as fh:
            runs.append(json.load(fh))
    out = {}
    for key, (_, factor) in QUANTITIES.items():
        present = [r for r in runs if r.get(key) is not None]
        if present and len(present) < len(runs):
            missing = [p for p, r in zip(paths, runs) if r.get(key) is None]
            raise SystemExit(f"{missing[0]}: no {key!r}, which the other runs of its set have; "
                             "compare summaries of one kind")
        if present:
            out[key] = factor * np.array([r[key] for r in runs], float)
    return out


def mean_and_error(values: np.ndarray) -> tuple[float, float]:
    """Mean over seeds and its standard error (nan for one seed: no spread to estimate it from)."""
    err = values.std(ddof=1) / np.sqrt(len(values)) if len(values) > 1 else float("nan")
    return float(values.mean()), float(err)


def fmt(mean: float, err: float) -> str:
    """The mean to the error's second significant digit."""
    if not np.isfinite(err) or err <= 0:
        return f"{mean:.4g} ± n/a"
    digits = max(0, int(-np.floor(np.log10(err))) + 1)
    return f"{mean:.{digits}f} ± {err:.{digits}f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--set", nargs="+", action="append", required=True, metavar=("NAME", "FILE"),
                    help="a set's name, then its runs' summary JSONs (one per seed)")
    args = ap.parse_args()
    sets = []
    for entry in args.set:
        if len(entry) < 2:
            raise SystemExit(f"--set {entry[0]}: give the name, then at least one summary JSON")
        sets.append((entry[0], load(entry[1:]), len(entry) - 1))
    keys = [k for k in QUANTITIES if all(k in s[1] for s in sets)]
    print(f"{'quantity':<22}" + "".join(f"{f'{name} ({n} seeds)':>26}" for name, _, n in sets)
          + (f"{'difference':>22}{'Welch p':>10}" if len(sets) > 1 else ""))
    for key in keys:
        line = f"{QUANTITIES[key][0]:<22}"
        for _, values, _ in sets:
            m, e = mean_and_error(values[key])
            line += f"{fmt(m, e):>26}"
        if len(sets) > 1 and key != "step_s":
            a, b = sets[0][1][key], sets[1][1][key]
            diff = a.mean() - b.mean()
            err = np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b)) if min(len(a), len(b)) > 1 else np.nan
            p = stats.ttest_ind(a, b, equal_var=False).pvalue if min(len(a), len(b)) > 1 else np.nan
            line += f"{fmt(diff, err):>22}{p:>10.2g}"
        print(line)
    print("errors: standard error of the mean over seeds; difference: first set minus second")


if __name__ == "__main__":
    main()
