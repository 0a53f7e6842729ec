"""Analysis of MD trajectories: structure (radial distribution functions, density), dynamics
(mean-squared displacement, diffusion coefficient) and vibrational spectra, with their figures."""

from legato_jax.analysis.dynamics import (Diffusion, diffusion_coefficient, frame_times_ps, msd, unwrap,
                                          without_drift)
from legato_jax.analysis.spectra import band_centroids, band_peaks, spectrum_of, vdos
from legato_jax.analysis.structure import density_g_cm3, largest_rmax, parse_pairs, rdf

__all__ = ["Diffusion", "band_centroids", "band_peaks", "density_g_cm3", "diffusion_coefficient", "frame_times_ps", "largest_rmax", "msd",
           "parse_pairs", "rdf", "spectrum_of", "unwrap", "vdos", "without_drift"]
