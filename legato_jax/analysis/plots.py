"""Figures of `legato analyze`: partial g(r) (against a reference where given), the MSD with its
diffusion fit, and the density along the run."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from legato_jax.figures import save_figure  # noqa: E402


def plot_rdf_axes(ax, r: np.ndarray, g: dict, reference: dict | None = None, ref_label: str = "reference",
                  label: str = "MD") -> None:
    """Partial g(r), one colour per pair; the reference's dashed in the same colour."""
    for k, (pair, values) in enumerate(g.items()):
        colour = f"C{k}"
        ax.plot(r, values, color=colour, lw=1.6, label=f"{pair} ({label})")
        if reference is not None and pair in reference.get("g", {}):
            ax.plot(reference["r_A"], reference["g"][pair], color=colour, lw=1.2, ls="--",
                    label=f"{pair} ({ref_label})")
    ax.axhline(1.0, color="0.6", lw=0.8)
    ax.set_xlabel("r (Å)")
    ax.set_ylabel("g(r)")
    ax.legend(fontsize=8, ncol=2)


def plot_analysis(result: dict, path: str | Path) -> Path:
    """One figure with a panel per analysis present in `result` (see `legato analyze --json`)."""
    panels = [k for k in ("rdf", "msd", "density") if k in result]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.2), squeeze=False)
    for ax, kind in zip(axes[0], panels):
        if kind == "rdf":
            rdf = result["rdf"]
            plot_rdf_axes(ax, np.asarray(rdf["r_A"]), {k: np.asarray(v) for k, v in rdf["g"].items()},
                          result.get("reference_rdf"), "reference")
            ax.set_title("radial distribution functions")
        elif kind == "msd":
            m = result["msd"]
            lag = np.asarray(m["lag_ps"])
            for k, (name, values) in enumerate(m["msd_A2"].items()):
                ax.plot(lag, values, color=f"C{k}", lw=1.6, label=name)
                d = result["diffusion"][name]
                t = np.linspace(d["t_from_ps"], d["t_to_ps"], 2)
                intercept = np.interp(d["t_from_ps"], lag, values) - 6 * d["D_A2_per_ps"] * d["t_from_ps"]
                ax.plot(t, intercept + 6 * d["D_A2_per_ps"] * t, color=f"C{k}", ls=":", lw=2,
                        label=f"D {d['D_1e-5_cm2_per_s']:.3g} ± {10 * d['stderr_A2_per_ps']:.2g} 1e-5 cm²/s")
            ax.set_xlabel("lag (ps)")
            ax.set_ylabel("MSD (Å²)")
            ax.set_title("mean-squared displacement")
            ax.legend(fontsize=8)
        else:
            d = result["density"]
            ax.plot(d["time_ps"], d["g_cm3"], lw=1.2)
            ax.set_xlabel("time (ps)")
            ax.set_ylabel("density (g/cm³)")
            ax.set_title(f"density {d['mean_g_cm3']:.4f} ± {d['std_g_cm3']:.2g} g/cm³")
    fig.tight_layout()
    return save_figure(fig, path)


def plot_rdf_comparison(curves: dict[str, tuple[np.ndarray, dict]], path: str | Path) -> Path:
    """One panel per pair, one line per source (`{label: (r, {pair: g})}`)."""
    pairs = list(next(iter(curves.values()))[1])
    fig, axes = plt.subplots(1, len(pairs), figsize=(4.6 * len(pairs), 3.8), squeeze=False)
    for ax, pair in zip(axes[0], pairs):
        for k, (label, (r, g)) in enumerate(curves.items()):
            ax.plot(r, g[pair], color=f"C{k}", lw=1.5, ls="--" if "data" in label else "-", label=label)
        ax.axhline(1.0, color="0.6", lw=0.8)
        ax.set_xlabel("r (Å)")
        ax.set_ylabel(f"g(r) {pair}")
        ax.set_title(pair)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_spectra(spectra, species, path: str | Path, x_max: float = 4000.0) -> Path:
    """One panel per element: each trajectory's VDOS, the ammonia bands shaded and named."""
    from legato_jax.analysis.spectra import AMMONIA_BANDS

    fig, axes = plt.subplots(len(species), 1, figsize=(7.5, 2.6 * len(species)), squeeze=False, sharex=True)
    for ax, x in zip(axes[:, 0], species):
        for k, s in enumerate(spectra):
            sel = s.frequency <= x_max
            ax.plot(s.frequency[sel], s.density[x][sel], color=f"C{k}", lw=1.2, label=s.label)
        for name, (lo, hi) in AMMONIA_BANDS.items():
            ax.axvspan(lo, hi, color="0.9", zorder=0)
            ax.text(0.5 * (lo + hi), 0.97, name, transform=ax.get_xaxis_transform(), ha="center", va="top", fontsize=7)
        ax.set_ylabel(f"VDOS {x if x != 'all' else '(mass-weighted)'}")
        ax.set_yticks([])
        ax.legend(fontsize=8, loc="center", bbox_to_anchor=(0.59, 0.6))  # the empty 1,800-2,900 cm^-1 gap
    axes[-1, 0].set_xlabel("frequency (cm$^{-1}$)")
    axes[-1, 0].set_xlim(0, x_max)
    return save_figure(fig, path)
