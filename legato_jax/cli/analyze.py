"""`legato analyze TRAJ`: partial g(r), MSD and diffusion coefficients, and density of a trajectory."""

from __future__ import annotations

import sys

from legato_jax.cli.options import add_json_option, check_json_target, emit, nonnegative_int, positive_float, positive_int
from legato_jax.errors import ConfigError, DataError


def register(sub) -> None:
    p = sub.add_parser("analyze", help="g(r), mean-squared displacement and diffusion, density of a trajectory")
    p.add_argument("trajectory", help="trajectory with a periodic cell (legato md --out, or any ASE-readable file)")
    p.add_argument("--rdf", nargs="*", metavar="PAIR",
                   help="partial g(r) of these pairs (N-N N-H H-H); no PAIR: every pair")
    p.add_argument("--msd", action="store_true", help="mean-squared displacement and diffusion coefficient per element")
    p.add_argument("--rmax", type=positive_float, help="Å, g(r) range (default: 8 or half the smallest cell width)")
    p.add_argument("--bins", type=positive_int, default=200, help="g(r) bins")
    p.add_argument("--skip", type=nonnegative_int, default=0, help="frames dropped at the start (equilibration)")
    p.add_argument("--stride", type=positive_int, default=1, help="use every STRIDE-th frame")
    p.add_argument("--dt", type=positive_float, help="fs per step, for frames without time_fs (legato md writes it)")
    p.add_argument("--reference", help="frames whose g(r) is drawn beside (the training data: data/ammonia.extxyz.xz)")
    p.add_argument("--reference-frames", type=positive_int, default=200,
                   help="at most this many reference frames, evenly spaced")
    add_json_option(p, "every curve and number")
    p.add_argument("--plot", metavar="PNG", help="write the figure here")
    p.set_defaults(func=main)


def read_trajectory(path: str, skip: int = 0, stride: int = 1):
    """The frames of `path` (compressed or not) after `skip`, every `stride`-th; periodic cells only."""
    from legato_jax.data.io import read_images
    from legato_jax.shipped import locate

    located = locate(path, "dataset")
    if not located.exists():
        raise DataError(f"{path}: no such file")
    try:
        frames = read_images(located)
    except DataError:
        raise
    except Exception as exc:  # ASE raises many types for unreadable files
        raise DataError(f"{path}: cannot be read as a trajectory ({type(exc).__name__}: {exc})") from None
    frames = frames[skip::stride]
    if not frames:
        raise DataError(f"{path}: no frames left after --skip {skip}")
    if not all(f.pbc.all() and f.cell.volume > 0 for f in frames):
        raise DataError(f"{path}: every frame needs a periodic 3-D cell for g(r), MSD and density")
    return frames


def analyze(frames, pairs_asked, msd_asked: bool, rmax=None, bins: int = 200, dt_fs=None) -> dict:
    """Every analysis asked for, as plain numbers and lists (the JSON of `legato analyze`)."""
    import numpy as np

    from legato_jax.analysis import (density_g_cm3, diffusion_coefficient, frame_times_ps, msd, parse_pairs,
                                     rdf, unwrap, without_drift)

    out = {"frames": len(frames), "atoms": len(frames[0])}
    dens = density_g_cm3(frames)
    try:
        times = frame_times_ps(frames, dt_fs)
    except ConfigError:
        times = None if msd_asked else np.arange(len(frames), dtype=float)
        if times is None:
            raise
    out["density"] = {"mean_g_cm3": float(dens.mean()), "std_g_cm3": float(dens.std()),
                      "time_ps": times.tolist(), "g_cm3": dens.tolist()}
    if pairs_asked is not None:
        r, g = rdf(frames, parse_pairs(pairs_asked, frames), rmax, bins)
        out["rdf"] = {"r_A": r.tolist(), "g": {k: v.tolist() for k, v in g.items()},
                      "first_peak": {k: {"r_A": float(r[np.argmax(v)]), "g": float(v.max())} for k, v in g.items()}}
    if msd_asked:
        if len({len(f) for f in frames}) != 1 or len(frames) < 8:
            raise DataError("MSD needs at least 8 frames with the same atoms")
        spacing = np.diff(times)
        if not np.allclose(spacing, spacing[0], rtol=1e-3, atol=1e-9) or spacing[0] <= 0:
            raise DataError("MSD needs frames evenly spaced in time (one run, one --traj-every)")
        pos = without_drift(unwrap(frames), frames[0].get_masses())
        max_lag = len(frames) // 2  # lags beyond half the run average too few origins
        lag = spacing[0] * np.arange(max_lag + 1)
        symbols = np.array(frames[0].get_chemical_symbols())
        groups = {"all": np.ones(len(symbols), bool), **{s: symbols == s for s in dict.fromkeys(symbols)}}
        curves = {name: msd(pos[:, mask], max_lag) for name, mask in groups.items()}
        out["msd"] = {"lag_ps": lag.tolist(), "msd_A2": {k: v.tolist() for k, v in curves.items()}}
        fits = {name: diffusion_coefficient(lag, curve) for name, curve in curves.items()}
        out["diffusion"] = {name: {"D_A2_per_ps": d.d_A2_per_ps, "stderr_A2_per_ps": d.stderr_A2_per_ps,
                                   "D_1e-5_cm2_per_s": d.d_1e5_cm2_per_s, "t_from_ps": d.t_from_ps,
                                   "t_to_ps": d.t_to_ps} for name, d in fits.items()}
    return out


def format_result(result: dict, name: str) -> str:
    lines = [f"{name}: {result['frames']} frames of {result['atoms']} atoms"]
    d = result["density"]
    lines.append(f"density               {d['mean_g_cm3']:.4f} ± {d['std_g_cm3']:.2g} g/cm^3 (mean ± std over frames)")
    for pair, peak in result.get("rdf", {}).get("first_peak", {}).items():
        lines.append(f"g(r) {pair:<16} highest peak {peak['g']:.2f} at {peak['r_A']:.2f} Å")
    for group, fit in result.get("diffusion", {}).items():
        lines.append(f"diffusion {group:<11} D = {fit['D_1e-5_cm2_per_s']:.3g} ± {10 * fit['stderr_A2_per_ps']:.2g} "
                     f"x 1e-5 cm^2/s (MSD slope over {fit['t_from_ps']:.3g}-{fit['t_to_ps']:.3g} ps)")
    return "\n".join(lines)


def main(args) -> int:
    from legato_jax.outputs import writable

    if args.plot:
        writable(args.plot, "--plot")
    check_json_target(args)
    pairs, msd_asked = args.rdf, args.msd
    if pairs is None and not msd_asked:
        pairs, msd_asked = [], True  # nothing named: everything
    frames = read_trajectory(args.trajectory, args.skip, args.stride)
    result = analyze(frames, pairs, msd_asked, args.rmax, args.bins, args.dt)
    if args.reference and "rdf" in result:
        import numpy as np

        from legato_jax.analysis import largest_rmax, rdf

        reference = read_trajectory(args.reference)
        keep = np.unique(np.linspace(0, len(reference) - 1, min(args.reference_frames, len(reference))).astype(int))
        reference = [reference[k] for k in keep]
        rmax = min(result["rdf"]["r_A"][-1] + 0.5 * (result["rdf"]["r_A"][1] - result["rdf"]["r_A"][0]),
                   largest_rmax(reference))
        pairs = [tuple(p.split("-")) for p in result["rdf"]["g"]]
        r, g = rdf(reference, pairs, rmax, args.bins)
        result["reference_rdf"] = {"source": args.reference, "frames": len(reference), "r_A": r.tolist(),
                                   "g": {k: v.tolist() for k, v in g.items()}}
    emit(args, result, format_result(result, args.trajectory))
    if args.plot:
        from legato_jax.analysis.plots import plot_analysis

        print(f"wrote {plot_analysis(result, args.plot)}", file=sys.stderr)
    return 0
