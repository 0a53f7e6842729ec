"""Benchmarks behind `legato bench ...` and scripts/bench_*.py; each prints a table.

Modules: `inference` (energy + forces per call), `train` (Adam vs SAM steps), `md` (MD step vs the
bare force call), `parallel_scaling` (weak scaling of decomposed MD, `legato bench scaling`), and
`timing` (the shared timer). The names below are imported on first use."""

from legato_jax.lazy import lazy_exports

_EXPORTS = {
    "median_time": "timing",
    "bench_legato": "inference", "bench_nequip": "inference", "NequipPeer": "inference", "matmul_peak_gflops": "inference",
    "bench_size": "md",
    "time_steps": "train",
    "measure": "parallel_scaling", "modelled_efficiency": "parallel_scaling",
}
__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
