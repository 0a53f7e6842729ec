"""Molecular dynamics with jax-md driven by a trained model: one engine (`engine`), the model as
a jax-md energy with an exact neighbour list for any periodic cell (`energy`, `image_list`),
the single-system runner (`integrate`), the recorder, runs (`run`), and path integrals (the
ring-polymer integrator `ring_polymer`, its runner `pimd`)."""

import warnings

# jax-md's own warnings, harmless here, filtered narrowly (by message and the jax module that
# raises them): its high_precision_sum asks for float64 sums in float32 runs (JAX keeps float32,
# as the run wants), and its sparse neighbour list scatters int64 indices into int32 buffers in
# float64 runs (the values are atom indices, far below 2^31).
warnings.filterwarnings("ignore", message=r"Explicitly requested dtype float64 requested in (sum|convert_element_type) "
                        r"is not available", category=UserWarning, module=r"jax\._src\.numpy\.reductions")
warnings.filterwarnings("ignore", message=r"scatter inputs have incompatible types: cannot safely cast value from "
                        r"dtype=int64 to dtype=int32", category=FutureWarning, module=r"jax\._src\.ops\.scatter")


from legato_jax.md.energy import MDSystem, check_cell, list_kind, minimum_image_is_exact, model_energy
from legato_jax.md.engine import CompileCounter, Runner, block_scan, run_stages, stage_chunks
from legato_jax.md.image_list import ImageList, image_neighbor_list
from legato_jax.md.integrate import Stage, StageRunner
from legato_jax.md.health import HealthLimits, MDUnstable
from legato_jax.md.recorder import Recorder
from legato_jax.md.run import MDConfig, MDResult, load_preset, run_md
from legato_jax.md.pimd import PIMDConfig, PIMDResult, run_pimd
from legato_jax.md.systems import load_structure, replicate

__all__ = ["CompileCounter", "HealthLimits", "ImageList", "MDConfig", "MDResult", "MDSystem", "MDUnstable", "PIMDConfig", "PIMDResult", "Recorder", "Runner",
           "Stage", "StageRunner", "block_scan", "check_cell", "image_neighbor_list", "list_kind", "load_preset",
           "load_structure", "minimum_image_is_exact", "model_energy", "replicate", "run_md", "run_pimd", "run_stages",
           "stage_chunks"]
