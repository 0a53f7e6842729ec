"""Calculators that let other codes drive legato models."""

from legato_jax.calculators.ase_calculator import LegatoCalculator

__all__ = ["LegatoCalculator"]
