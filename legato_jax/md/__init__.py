"""Molecular dynamics with jax-md driven by a trained model."""

from legato_jax.md.energy import MDSystem, check_cell, model_energy
from legato_jax.md.integrate import Stage
from legato_jax.md.run import MDConfig, MDResult, load_preset, run_md
from legato_jax.md.systems import ammonia_box, load_structure, replicate

__all__ = ["MDConfig", "MDResult", "MDSystem", "Stage", "ammonia_box", "check_cell", "load_preset",
           "load_structure", "model_energy", "replicate", "run_md"]
