"""The rho scan: models trained with otherwise identical settings over a list of SAM radii, each
measured for accuracy (test split), sharpness (weight noise and the SAM probe on training frames)
and time to failure, so that robustness can be read against sharpness."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from legato_jax.experiments.sharpness import dataset_loss_fn, noise_sharpness, sam_sharpness
from legato_jax.experiments.ttf import TTFConfig, model_fingerprint, run_ttf
from legato_jax.figures import save_figure
from legato_jax.outputs import atomic_write_text


@dataclass(frozen=True)
class RhoScanConfig:
    rhos: tuple[float, ...]
    train_config: str  # training YAML shared by every rho
    out_dir: str
    ttf: TTFConfig | None  # None: train only
    train_overrides: tuple[str, ...] = ()  # KEY=VALUE, as `legato train --set`
    sharpness_frames: int = 100
    sharpness_draws: int = 50
    sharpness_std: float = 0.05
    sam_probe_rho: float = 0.05
    train_only: bool = False  # train (or continue) every rho and stop: parallel training processes


TRAINED = "trained.json"  # written when a rho's training has ended


def run_name(rho: float) -> str:
    return f"rho_{rho:g}"


def train_one(cfg: RhoScanConfig, rho: float, log: Callable[[str], None]):
    """The trained model of one rho: reused when its run has ended (RUN/trained.json), continued
    from its last checkpoint when it was interrupted, trained from the start otherwise."""
    from legato_jax.model.io import resolve_model
    from legato_jax.train.config import load_train_config
    from legato_jax.train.trainer import Trainer, resume

    train_cfg = load_train_config(cfg.train_config, [*cfg.train_overrides, f"rho={rho}", f"name={run_name(rho)}",
                                                     f"out_dir={cfg.out_dir}"])
    run = train_cfg.run_dir
    if (run / TRAINED).exists():
        log(f"rho {rho:g}: reusing {run}")
        _, params, _ = resolve_model(run)
        return Trainer(train_cfg, progress=False), params, None
    if (run / "checkpoint.msgpack").exists():
        trainer, state = resume(run, progress=False)
        log(f"rho {rho:g}: continuing {run} from epoch {int(state.epoch)}")
    else:
        trainer, state = Trainer(train_cfg, progress=False), None
        log(f"rho {rho:g}: training into {run}")
    start_epoch = 0 if state is None else int(state.epoch)
    state = trainer.fit(state)
    (run / TRAINED).write_text(json.dumps({"epochs": int(state.epoch), "stop_reason": trainer.stop_reason,
                                           "elapsed_s": float(state.elapsed)}, indent=1))
    _, params, _ = resolve_model(run)  # best.npz: the EMA weights of the lowest validation loss
    return trainer, params, int(state.epoch) - start_epoch


MEASURED = "measured.json"  # the measurements of an ended run, with the settings they were made with


def measure(cfg: RhoScanConfig, trainer, params) -> dict:
    """Test-split errors and the two sharpness measures of one trained model; stored in
    RUN/measured.json and reused while the model and the measurement settings are the same."""
    key = {"model": model_fingerprint(trainer.potential, params), "sharpness_frames": cfg.sharpness_frames,
           "sharpness_draws": cfg.sharpness_draws, "sharpness_std": cfg.sharpness_std,
           "sam_probe_rho": cfg.sam_probe_rho}
    path = trainer.cfg.run_dir / MEASURED
    if path.exists():
        stored = json.loads(path.read_text())
        if stored.get("key") == key:
            return stored["measured"]
    measured = _measure(cfg, trainer, params)
    atomic_write_text(path, json.dumps({"key": key, "measured": measured}, indent=1))
    return measured


def _measure(cfg: RhoScanConfig, trainer, params) -> dict:
    from legato_jax.train.evaluate import error_metrics, predict_frames

    test = trainer.data.test or trainer.data.validation
    metrics = error_metrics(test, predict_frames(trainer.potential, params, test), trainer.data.type_map)
    loss, grad = dataset_loss_fn(trainer.potential, trainer.data.train[: cfg.sharpness_frames])
    noise = noise_sharpness(loss, params, cfg.sharpness_std, cfg.sharpness_draws)
    probe = sam_sharpness(loss, grad, params, cfg.sam_probe_rho)
    return {"test_f_mae": metrics["forces_mae_meV_per_A"], "test_e_mae": metrics["energy_per_atom_mae_meV"],
            "test_subset": "test" if trainer.data.test else "validation",
            "noise_sharpness": noise["mean_rise"], "noise_sharpness_stderr": noise["stderr_rise"],
            "sam_sharpness": probe["rise"], "train_loss": noise["loss"]}


def run_rho_scan(cfg: RhoScanConfig, log: Callable[[str], None] = print) -> dict:
    """Train and measure every rho, then run the time-to-failure experiment on all of them at once;
    writes rho_scan.json, rho_scan.csv and rho_scan.png into `out_dir`."""
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows, models = [], {}
    for rho in cfg.rhos:
        trainer, params, epochs = train_one(cfg, rho, log)
        trained = json.loads((trainer.cfg.run_dir / TRAINED).read_text())
        row = {"rho": rho, "run_dir": str(trainer.cfg.run_dir), "epochs": trained["epochs"],
               "train_cpu_h": trained["elapsed_s"] / 3600, "epochs_trained_now": epochs}
        if cfg.train_only:
            log(f"rho {rho:g}: {trained['epochs']} epochs ({trained['stop_reason']})")
            continue
        row.update(measure(cfg, trainer, params))
        rows.append(row)
        models[run_name(rho)] = (trainer.potential, params)
    if cfg.train_only:
        return {"rows": [], "trained": [run_name(r) for r in cfg.rhos]}
    ttf = run_ttf(models, cfg.ttf, log, out_dir=Path(cfg.out_dir) / "ttf")
    largest = str(max(cfg.ttf.sizes))
    for row in rows:
        m = ttf["models"][run_name(row["rho"])]
        for c in cfg.ttf.criteria:
            s = m["sizes"][largest][c]
            row[f"ttf_{c}_median_ps"] = s["median_ps"]
            row[f"ttf_{c}_censored"] = s["censored_fraction"]
            row[f"beta_{c}"] = m["beta"][c]["beta"]
    result = {"rows": rows, "ttf": ttf, "largest_size": int(largest)}
    (out / "rho_scan.json").write_text(json.dumps(result, indent=1))
    with open(out / "rho_scan.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    plot_rho_scan(result, out / "rho_scan.png")
    return result


def format_rho_table(result: dict) -> str:
    criteria = result["ttf"]["protocol"]["criteria"]
    head = f"{'rho':>8}{'F MAE':>9}{'E MAE':>8}{'noise sharp.':>14}{'SAM sharp.':>12}"
    head += "".join(f"{c[:13]:>15}" for c in criteria)
    lines = [f"median t_failure (ps) at {result['largest_size']} atoms; * more than half censored (lower bound)",
             head]
    for r in result["rows"]:
        line = (f"{r['rho']:>8g}{r['test_f_mae']:>9.2f}{r['test_e_mae']:>8.3f}"
                f"{r['noise_sharpness']:>14.4g}{r['sam_sharpness']:>12.4g}")
        for c in criteria:
            star = "*" if r[f"ttf_{c}_censored"] >= 0.5 else " "
            line += f"{r[f'ttf_{c}_median_ps']:>14.3g}{star}"
        lines.append(line)
    lines.append("F MAE meV/Å and E MAE meV/atom on the test split; sharpness: mean loss rise under weight noise, "
                 "and the rise at the SAM probe")
    return "\n".join(lines)


def plot_rho_scan(result: dict, path: str | Path) -> Path:
    """Median time to failure against noise sharpness, one panel per system size and one series
    per criterion, each point labelled by its rho (the paper's implicit-regularisation picture)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    criteria = result["ttf"]["protocol"]["criteria"]
    sizes = sorted({int(n) for m in result["ttf"]["models"].values() for n in m["sizes"]})
    x = np.array([r["noise_sharpness"] for r in rows])
    xerr = np.nan_to_num(np.array([r["noise_sharpness_stderr"] for r in rows]))
    fig, axes = plt.subplots(1, len(sizes), figsize=(5 * len(sizes), 4.2), squeeze=False, sharey=True)
    for ax, n in zip(axes[0], sizes):
        for k, c in enumerate(criteria):
            s = [result["ttf"]["models"][run_name(r["rho"])]["sizes"][str(n)][c] for r in rows]
            y = np.array([v["median_ps"] for v in s])
            yerr = np.abs(np.array([[v["median_ci_ps"][0] for v in s], [v["median_ci_ps"][1] for v in s]]) - y)
            ax.errorbar(x, y, xerr=xerr, yerr=yerr, fmt="o", color=f"C{k}", label=c, capsize=3, lw=1)
            if k == 0:
                for r, xi, yi in zip(rows, x, y):
                    ax.annotate(f"{r['rho']:g}", (xi, yi), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set_xlabel("noise sharpness (mean loss rise)")
        ax.set_title(f"{n} atoms (labels: rho)", fontsize=9)
    axes[0][0].set_ylabel("median time to failure (ps)")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)
