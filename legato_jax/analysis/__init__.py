"""Analysis of MD trajectories: structure (radial distribution functions, density) and dynamics
(mean-squared displacement, diffusion coefficient), with their figures."""

from legato_jax.analysis.dynamics import (Diffusion, diffusion_coefficient, frame_times_ps, msd, unwrap,
                                          without_drift)
from legato_jax.analysis.structure import density_g_cm3, largest_rmax, parse_pairs, rdf

__all__ = ["Diffusion", "density_g_cm3", "diffusion_coefficient", "frame_times_ps", "largest_rmax", "msd",
           "parse_pairs", "rdf", "unwrap", "without_drift"]
