"""Allegro as pure Flax modules on e3nn-jax, and the potential built on it."""

from legato_jax.model.allegro import Allegro
from legato_jax.model.config import AllegroConfig, ModelStats
from legato_jax.model.io import load_model, resolve_model, save_model
from legato_jax.model.potential import Potential, Prediction, parameter_count

__all__ = ["Allegro", "AllegroConfig", "ModelStats", "Potential", "Prediction", "load_model",
           "parameter_count", "resolve_model", "save_model"]
