"""Spatial domain decomposition of MD across devices (shard_map) and MPI ranks (mpi4jax).

The names below are imported on first use: `request_host_devices` must be able to run before
anything starts JAX's backends."""

from importlib import import_module

_EXPORTS = {
    "DomainGrid": "domains", "decompose": "domains", "gather": "domains",
    "domain_energy_fn": "energy", "request_host_devices": "energy",
    "HaloBackend": "halo", "MeshBackend": "halo", "MPIBackend": "halo",
    "MeshLayout": "layouts", "MPILayout": "layouts",
    "run_md_decomposed": "run",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
