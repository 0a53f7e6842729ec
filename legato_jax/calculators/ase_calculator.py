"""ASE calculator for legato models: energy, free_energy, energies, forces, stress.

Atom and edge counts are padded to buckets, so a model compiles once per bucket and later
calls with a similar system (MD, relaxations, other frames of a dataset) reuse it.
"""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes
from ase.stress import full_3x3_to_voigt_6_stress

from legato_jax.data.batching import bucket
from legato_jax.data.graph import TypeMap, atoms_to_graph, collate
from legato_jax.model.config import AllegroConfig, ModelStats
from legato_jax.model.potential import Potential


class LegatoCalculator(Calculator):
    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress"]

    def __init__(self, potential: Potential, params, growth: float = 1.2, **kwargs):
        super().__init__(**kwargs)
        self.potential = potential
        self.params = params
        self.type_map = TypeMap(potential.config.species)
        self.growth = growth
        self.shapes_compiled: set[tuple[int, int]] = set()
        self._predict = jax.jit(potential.predict)

    @classmethod
    def from_file(cls, path: str | Path, **kwargs) -> "LegatoCalculator":
        from legato_jax.model.io import load_model

        potential, params, _ = load_model(path)
        return cls(potential, params, **kwargs)

    @classmethod
    def from_config(cls, config: AllegroConfig | str | Path, seed: int = 0, stats: ModelStats | None = None,
                    **kwargs) -> "LegatoCalculator":
        """An untrained model (random parameters from `seed`): for tests, timing and plumbing."""
        if not isinstance(config, AllegroConfig):
            config = AllegroConfig.from_yaml(config)
        potential = Potential(config, stats or ModelStats.default(len(config.species)))
        from ase.build import molecule

        probe = atoms_to_graph(molecule("H2"), TypeMap(("H",)), config.r_max)
        graph = collate([probe], 8, 8, 2, config.r_max).graph
        params = potential.init(jax.random.PRNGKey(seed), graph)
        return cls(potential, params, **kwargs)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        if "stress" in properties and not atoms.pbc.all():
            raise PropertyNotImplementedError("stress needs a cell periodic in all three directions")
        cutoff = self.potential.config.r_max
        graph = atoms_to_graph(atoms, self.type_map, cutoff)
        n_node = bucket(graph.n_node + 1, 8, self.growth)
        n_edge = bucket(max(graph.n_edge, 1), 64, self.growth)
        batch = collate([graph], n_node, n_edge, 2, cutoff, dtype=np.float64)
        self.shapes_compiled.add((n_node, n_edge))
        with jax.enable_x64(self.potential.config.dtype == "float64"):
            out = jax.device_get(self._predict(self.params, batch.graph))
        n = len(atoms)
        energy = float(out.energy[0])
        self.results = {
            "energy": energy,
            "free_energy": energy,
            "energies": np.asarray(out.energies[:n], dtype=np.float64),
            "forces": np.asarray(out.forces[:n], dtype=np.float64),
        }
        if atoms.pbc.all():
            self.results["stress"] = full_3x3_to_voigt_6_stress(np.asarray(out.stress[0], dtype=np.float64))


