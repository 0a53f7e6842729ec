"""Learning curves of training runs: validation force MAE and learning rate against epoch, read
from each run's metrics.csv, several runs in one figure."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from legato_jax.errors import ConfigError

COLUMNS = ("epoch", "lr", "val_f_mae", "val_loss", "elapsed_s")


def read_metrics(path: str | Path) -> dict[str, np.ndarray]:
    """The numeric columns of a run's metrics.csv (a run directory or the file itself)."""
    path = Path(path)
    path = path / "metrics.csv" if path.is_dir() else path
    if not path.is_file():
        raise ConfigError(f"{path}: no metrics.csv (give a training run directory or its metrics.csv)")
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    missing = [c for c in COLUMNS if rows and c not in rows[0]]
    if not rows or missing:
        raise ConfigError(f"{path}: " + (f"lacks the columns {missing}" if rows else "holds no epoch yet"))
    return {c: np.array([float(r[c]) for r in rows]) for c in rows[0] if c in COLUMNS}


def plot_learning_curves(runs: dict[str, str | Path], path: str | Path) -> Path:
    """One figure, two panels sharing the epoch axis: validation force MAE (EMA weights, log
    scale) and the learning rate, one line per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from legato_jax.figures import save_figure

    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(6.4, 5.6), height_ratios=(2, 1))
    for name, run in runs.items():
        m = read_metrics(run)
        line, = top.plot(m["epoch"], m["val_f_mae"], label=f"{name} (last {m['val_f_mae'][-1]:.1f} meV/Å)")
        bottom.plot(m["epoch"], m["lr"], color=line.get_color())
    top.set_yscale("log")
    top.set_ylabel("validation force MAE (meV/Å)")
    top.legend()
    top.grid(True, which="both", alpha=0.3)
    bottom.set_yscale("log")
    bottom.set_ylabel("learning rate")
    bottom.set_xlabel("epoch")
    bottom.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, path)
