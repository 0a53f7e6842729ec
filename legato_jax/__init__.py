"""legato_jax: Allegro and Allegro-Legato (Allegro + SAM) interatomic potentials and MD in JAX."""

__version__ = "0.1.0"
