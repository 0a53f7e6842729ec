"""Figures of the time-to-failure experiment."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from legato_jax.figures import save_figure


def plot_ttf(result: dict, path: str | Path) -> Path:
    """log-log median time to failure against atoms, one panel per criterion: 95% bootstrap
    intervals as error bars, censored medians as open markers, and each model's fitted
    t = exp(a) N^-beta line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    criteria = result["protocol"]["criteria"]
    cols = min(len(criteria), 3)
    rows = -(-len(criteria) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.6 * rows), squeeze=False)
    for ax, c in zip(axes.flat, criteria):
        shown = []
        for k, (name, m) in enumerate(result["models"].items()):
            color = f"C{k}"
            n = np.array([int(s) for s in m["sizes"]], float)
            per = [m["sizes"][s][c] for s in m["sizes"]]
            med = np.array([p["median_ps"] for p in per])
            lo = np.array([p["median_ci_ps"][0] for p in per])
            hi = np.array([p["median_ci_ps"][1] for p in per])
            err = np.nan_to_num(np.vstack([med - lo, hi - med]), nan=0.0).clip(min=0)
            exact = np.array([p["median_exact"] for p in per])
            b = m["beta"][c]
            label = name
            if b["beta"] is not None:
                ci = b.get("beta_ci") or [None, None]
                interval = (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if None not in ci and np.all(np.isfinite(ci)) else "")
                label += f": beta {b['beta']:.2f}{interval}"
            ax.errorbar(n, med, yerr=err, fmt="none", ecolor=color, capsize=3)
            ax.plot(n[exact], med[exact], "o", color=color, label=label if exact.any() else None)
            ax.plot(n[~exact], med[~exact], "o", mfc="none", color=color, label=None if exact.any() else label)
            shown += [med, lo, hi]
            if b["beta"] is not None:
                grid = np.geomspace(n.min(), n.max(), 20)
                ax.plot(grid, _fitted_median(m, c, grid), "-", color=color, lw=1)
        y = np.concatenate(shown)
        y = y[np.isfinite(y) & (y > 0)]
        if len(y):  # explicit limits: a flat log axis otherwise spans a sliver of a decade
            ax.set_ylim(y.min() / 1.5, y.max() * 1.5)
        ax.set_xscale("log")
        ax.set_yscale("log")
        _readable_log_ticks(ax, n_all=sorted({int(s) for m in result["models"].values() for s in m["sizes"]}))
        ax.set_title(c)
        ax.set_xlabel("atoms N")
        ax.set_ylabel("median time to failure (ps)")
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(criteria):]:
        ax.set_visible(False)
    fig.suptitle("open markers: more than half the replicas censored (a lower bound)", fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def _readable_log_ticks(ax, n_all: list[int]) -> None:
    """Plain-number ticks on log axes: the sizes run on x, a few round values on y (matplotlib
    would show 10^k and nothing between on a decade-wide axis)."""
    from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator, ScalarFormatter

    ax.xaxis.set_major_locator(FixedLocator(n_all))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_locator(NullLocator())
    lo, hi = ax.get_ylim()
    ticks = [v * 10.0**k for k in range(int(np.floor(np.log10(lo))), int(np.ceil(np.log10(hi))) + 1)
             for v in (1, 2, 5) if lo <= v * 10.0**k <= hi]
    if len(ticks) >= 2:
        ax.yaxis.set_major_locator(FixedLocator(ticks))
        ax.yaxis.set_major_formatter(ScalarFormatter())
        ax.yaxis.set_minor_formatter(NullFormatter())


def _fitted_median(model: dict, criterion: str, n: np.ndarray) -> np.ndarray:
    b = model["beta"][criterion]
    return np.exp(b["log_prefactor"]) * n ** (-b["beta"])
