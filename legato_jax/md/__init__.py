"""Molecular dynamics with jax-md driven by a trained model."""

from legato_jax.md.energy import MDSystem, check_cell, model_energy

__all__ = ["MDSystem", "check_cell", "model_energy"]
