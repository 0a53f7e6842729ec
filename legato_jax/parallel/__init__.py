"""Spatial domain decomposition of MD across devices (shard_map) and MPI ranks (mpi4jax).

The names below are imported on first use: `request_host_devices` must be able to run before
anything starts JAX's backends."""

from legato_jax.lazy import lazy_exports

_EXPORTS = {
    "DomainGrid": "domains", "decompose": "domains", "gather": "domains",
    "domain_energy_fn": "energy", "request_host_devices": "devices",
    "HaloBackend": "halo", "MeshBackend": "halo", "MPIBackend": "halo",
    "MeshLayout": "layouts", "MPILayout": "layouts",
    "run_md_decomposed": "run",
}
__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
