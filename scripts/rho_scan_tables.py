"""Markdown table of a `legato rho-scan` result (`OUT/rho_scan.json`) as docs/results.md shows it,
and the trend the paper's picture predicts: does time to failure rise as sharpness falls?

Per size and criterion: Spearman's rank correlation between the models' noise sharpness and
their median time to failure, with its exact permutation p-value over the models (every
ordering of the rho runs), and the same correlation over all replicas (each replica's failure
time against its model's sharpness; its p-value from permuting replicas' model labels), which
uses the scatter within each model but treats the models' sharpness as exact.

Usage: python scripts/rho_scan_tables.py OUT/rho_scan.json
"""

from __future__ import annotations

import itertools
import json
import sys

import numpy as np
from scipy.stats import spearmanr


def _ci(lo: float, hi: float) -> str:
    return f"[{lo:.2f}, {hi:.2f}]"


def rho_table(result: dict) -> str:
    """One row per rho: errors, sharpness, median times to failure with 95 % intervals."""
    models = result["ttf"]["models"]
    criteria = result["ttf"]["protocol"]["criteria"]
    sizes = list(next(iter(models.values()))["sizes"])
    cols = [(c, n) for c in criteria for n in sizes]
    head = ("| rho | test F MAE, meV/Å | test E MAE, meV/atom | noise sharpness | SAM-probe sharpness | "
            + " | ".join(f"{c}, {int(n):,} atoms" for c, n in cols) + " |")
    lines = [head, "|" + "---|" * (5 + len(cols))]
    for row in result["rows"]:
        m = models[f"rho_{row['rho']:g}"]
        cells = []
        for c, n in cols:
            s = m["sizes"][n][c]
            cell = f"{s['median_ps']:.2f} {_ci(*s['median_ci_ps'])}"
            cells.append(cell if s["median_exact"] else f">= {s['median_ps']:.2f}")
        lines.append(f"| {row['rho']:g} | {row['test_f_mae']:.1f} | {row['test_e_mae']:.2f} | "
                     f"{row['noise_sharpness']:.3f} ± {row['noise_sharpness_stderr']:.3f} | "
                     f"{row['sam_sharpness']:.4f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _model_level(sharpness: np.ndarray, medians: np.ndarray) -> tuple[float, float]:
    """Spearman's correlation and its exact two-sided permutation p over every ordering."""
    observed = spearmanr(sharpness, medians).statistic
    perms = [spearmanr(sharpness, medians[list(p)]).statistic for p in itertools.permutations(range(len(medians)))]
    return observed, float(np.mean(np.abs(perms) >= abs(observed) - 1e-12))


def _replica_level(sharpness: np.ndarray, times: list[np.ndarray], draws: int = 20000,
                   seed: int = 0) -> tuple[float, float]:
    """Spearman's correlation of every replica's time with its model's sharpness; two-sided
    p from permuting the replicas' model labels (every replica here failed: no censoring)."""
    x = np.concatenate([np.full(len(t), s) for s, t in zip(sharpness, times)])
    y = np.concatenate(times)
    observed = spearmanr(x, y).statistic
    rng = np.random.default_rng(seed)
    null = np.array([spearmanr(rng.permutation(x), y).statistic for _ in range(draws)])
    return observed, float((np.sum(np.abs(null) >= abs(observed)) + 1) / (draws + 1))


def trend_table(result: dict) -> str:
    """Spearman's rank correlation of time to failure with noise sharpness, per size and criterion."""
    models = result["ttf"]["models"]
    criteria = result["ttf"]["protocol"]["criteria"]
    sizes = list(next(iter(models.values()))["sizes"])
    rows = result["rows"]
    sharp = np.array([r["noise_sharpness"] for r in rows])
    lines = ["| criterion | atoms | Spearman, model medians (exact p, 7! orderings) | Spearman, all replicas (permutation p) |",
             "|---|---|---|---|"]
    for c in criteria:
        for n in sizes:
            summaries = [models[f"rho_{r['rho']:g}"]["sizes"][n][c] for r in rows]
            if not all(s["n_failed"] == len(s["failed"]) for s in summaries):
                lines.append(f"| {c} | {int(n):,} | (censored replicas: not computed) | |")
                continue
            medians = np.array([s["median_ps"] for s in summaries])
            times = [np.asarray(s["time_ps"], float) for s in summaries]
            r_m, p_m = _model_level(sharp, medians)
            r_r, p_r = _replica_level(sharp, times)
            lines.append(f"| {c} | {int(n):,} | {r_m:+.2f} (p = {p_m:.3f}) | {r_r:+.2f} (p = {p_r:.4f}) |")
    return "\n".join(lines)


def main(path: str) -> None:
    result = json.loads(open(path).read())
    print(rho_table(result))
    print()
    print(trend_table(result))


if __name__ == "__main__":
    main(sys.argv[1])
