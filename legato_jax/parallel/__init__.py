"""Spatial domain decomposition of MD across devices (shard_map) and MPI ranks (mpi4jax)."""
