"""`legato spectrum TRAJ [TRAJ ...]`: vibrational density of states per element from the velocity
autocorrelation of trajectories with momenta (legato md --out, legato pimd --out for TRPMD
centroids), the peak of each ammonia band, and a figure of the spectra side by side."""

from __future__ import annotations

from legato_jax.cli.options import add_json_option, check_json_target, emit, nonnegative_int, positive_float
from legato_jax.errors import ConfigError


def register(sub) -> None:
    p = sub.add_parser("spectrum", help="vibrational density of states (VDOS) from velocity autocorrelation")
    p.add_argument("trajectories", nargs="+", metavar="TRAJ", help="trajectories with momenta and time_fs")
    p.add_argument("--labels", nargs="+", help="one label per trajectory (default: file names)")
    p.add_argument("--species", nargs="+", help="elements to show (default: every element and the mass-weighted total)")
    p.add_argument("--window", default="hann", help="taper of the autocorrelation (a scipy window name, or none)")
    p.add_argument("--max-lag-fs", type=positive_float, default=1000.0,
                   help="correlation length in fs: longer resolves narrower lines, noisier")
    p.add_argument("--skip", type=nonnegative_int, default=0, help="frames dropped at the start of each trajectory")
    p.add_argument("--plot", metavar="PNG", help="write the figure here")
    add_json_option(p, "the spectra and band peaks")
    p.set_defaults(func=main)


def main(args) -> int:
    from legato_jax.analysis.spectra import band_centroids, band_peaks, spectrum_of
    from legato_jax.cli.analyze import read_trajectory
    from legato_jax.outputs import writable

    labels = args.labels or [str(t) for t in args.trajectories]
    if len(labels) != len(args.trajectories):
        raise ConfigError(f"--labels names {len(labels)} trajectories, {len(args.trajectories)} were given")
    if args.plot:
        writable(args.plot, "--plot")
    check_json_target(args)
    spectra = []
    for path, label in zip(args.trajectories, labels):
        frames = read_trajectory(path, args.skip)
        spectra.append(spectrum_of(frames, label, args.max_lag_fs, args.window, path))
    species = args.species or list(spectra[0].density)
    for s, path in zip(spectra, args.trajectories):
        missing = [x for x in species if x not in s.density]
        if missing:
            raise ConfigError(f"{path}: has no {', '.join(missing)}; it holds {sorted(s.density)}")
    peaks = {s.label: {x: band_peaks(s.frequency, s.density[x]) for x in species} for s in spectra}
    centroids = {s.label: {x: band_centroids(s.frequency, s.density[x]) for x in species} for s in spectra}
    if args.plot:
        from legato_jax.analysis.plots import plot_spectra

        plot_spectra(spectra, species, args.plot)
    result = {"window": args.window, "max_lag_fs": args.max_lag_fs, "peaks_cm1": peaks, "centroids_cm1": centroids,
              "spectra": [{"label": s.label, "dt_fs": s.dt_fs, "frames": s.frames, "frequency_cm1": s.frequency,
                           "density": {x: s.density[x] for x in species}} for s in spectra]}
    emit(args, result, peak_table(peaks, species, spectra) + "\n" + peak_table(centroids, species, spectra, "Band centroids"))
    return 0


def peak_table(peaks: dict, species: list[str], spectra, title: str = "Band peaks") -> str:
    from legato_jax.analysis.spectra import AMMONIA_BANDS

    bands = list(AMMONIA_BANDS)
    res = spectra[0].frequency[1] - spectra[0].frequency[0]
    lines = [f"{title} (cm^-1; resolution {res:.1f} cm^-1)", "| trajectory | element | " + " | ".join(bands) + " |",
             "|---|---|" + "---|" * len(bands)]
    for label, per in peaks.items():
        for x in species:
            lines.append(f"| {label} | {x} | " + " | ".join(f"{per[x][b]:.0f}" if b in per[x] else "-" for b in bands) + " |")
    return "\n".join(lines)
