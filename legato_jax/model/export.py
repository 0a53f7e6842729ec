"""A trained model as a `jax.export` (StableHLO) artifact: energy, per-atom energies, forces and
stress for fixed atom and edge capacities, runnable with jax alone (no legato_jax model code), so
that other MD codes and services can call it.

The artifact is one JSON file: the serialized program (base64) and its contract (cutoff, species
in index order, capacities, dtype, units and the input convention). Inputs, in order:
positions (max_atoms, 3) Å; species (max_atoms,) int32 indices into `species`; cell (3, 3) rows
are lattice vectors; senders (max_edges,) int32, the neighbour j; receivers (max_edges,) int32,
the centre i; shifts (max_edges, 3) int32 cell shifts S, so that an edge vector is
r_j - r_i + S @ cell (ASE's `neighbor_list("ijS", atoms, cutoff)` gives i, j, S); n_atoms and
n_edges () int32, the real counts (entries past them are ignored). Outputs: energy () eV,
energies (max_atoms,) eV, forces (max_atoms, 3) eV/Å, stress (3, 3) eV/Å^3 (ASE sign).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from legato_jax.data.graph import Graph
from legato_jax.model.potential import Potential

FORMAT = "legato-jax-export-1"


def exportable(potential: Potential, params, max_atoms: int, max_edges: int):
    """The model as a function of fixed-shape arrays (see the module docstring); one padding atom
    and a padding frame are added inside, as `collate` does, so masked edges stay finite."""
    r_max = potential.config.r_max
    dtype = potential.dtype

    def fn(positions, species, cell, senders, receivers, shifts, n_atoms, n_edges):
        pad = max_atoms
        node_mask = jnp.arange(max_atoms + 1) < n_atoms
        edge_mask = jnp.arange(max_edges) < n_edges
        pos = jnp.concatenate([positions.astype(dtype), jnp.zeros((1, 3), dtype)])
        shifts = jnp.where(edge_mask[:, None], shifts, jnp.array([1, 0, 0], jnp.int32))
        graph = Graph(
            positions=jnp.where(node_mask[:, None], pos, 0.0),
            species=jnp.where(node_mask, jnp.concatenate([species, jnp.zeros(1, jnp.int32)]), 0),
            cell=jnp.stack([cell.astype(dtype), jnp.eye(3, dtype=dtype) * (2.0 * r_max + 1.0)]),
            senders=jnp.where(edge_mask, senders, pad), receivers=jnp.where(edge_mask, receivers, pad),
            shifts=shifts, node_mask=node_mask, edge_mask=edge_mask, graph_mask=jnp.array([True, False]),
            node_graph=jnp.where(node_mask, 0, 1).astype(jnp.int32),
            n_node=jnp.stack([n_atoms, jnp.int32(0)]).astype(jnp.int32),
        )
        out = potential.predict(params, graph)
        return out.energy[0], out.energies[:max_atoms], out.forces[:max_atoms], out.stress[0]

    return fn


def export_model(potential: Potential, params, path: str | Path, max_atoms: int, max_edges: int,
                 platforms: tuple[str, ...] = ("cpu",)) -> dict:
    """Write the artifact to `path` (atomically) and return its contract."""
    from legato_jax.outputs import atomic_write_text

    dtype = potential.dtype
    shapes = (jax.ShapeDtypeStruct((max_atoms, 3), dtype), jax.ShapeDtypeStruct((max_atoms,), jnp.int32),
              jax.ShapeDtypeStruct((3, 3), dtype), jax.ShapeDtypeStruct((max_edges,), jnp.int32),
              jax.ShapeDtypeStruct((max_edges,), jnp.int32), jax.ShapeDtypeStruct((max_edges, 3), jnp.int32),
              jax.ShapeDtypeStruct((), jnp.int32), jax.ShapeDtypeStruct((), jnp.int32))
    exported = jax.export.export(jax.jit(exportable(potential, params, max_atoms, max_edges)),
                                 platforms=platforms)(*shapes)
    contract = {"cutoff": potential.config.r_max, "species": list(potential.config.species),
                "max_atoms": max_atoms, "max_edges": max_edges, "dtype": potential.config.dtype,
                "units": "metal (Å, eV, eV/Å, eV/Å^3)", "platforms": list(platforms),
                "inputs": ["positions", "species", "cell", "senders", "receivers", "shifts", "n_atoms", "n_edges"],
                "outputs": ["energy", "energies", "forces", "stress"], "edge_vector": "r[senders] - r[receivers] + shifts @ cell",
                "jax_version": jax.__version__}
    bundle = {"format": FORMAT, "contract": contract,
              "program_b64": base64.b64encode(bytes(exported.serialize())).decode("ascii")}
    atomic_write_text(path, json.dumps(bundle, indent=1) + "\n")
    return contract


def load_exported(path: str | Path):
    """(call, contract) of an artifact: `call(*inputs)` runs it. Uses jax and the standard
    library only, as any consumer would (`jax.export.deserialize`)."""
    bundle = json.loads(Path(path).read_text())
    if bundle.get("format") != FORMAT:
        raise ValueError(f"{path}: not a {FORMAT} artifact")
    exported = jax.export.deserialize(bytearray(base64.b64decode(bundle["program_b64"])))
    return exported.call, bundle["contract"]


def inputs_for(atoms, contract: dict) -> tuple:
    """The artifact's inputs for an ASE `Atoms` (neighbours from ASE's `neighbor_list`), padded to
    the contract's capacities."""
    from ase.neighborlist import neighbor_list

    n, cap_n, cap_e = len(atoms), contract["max_atoms"], contract["max_edges"]
    i, j, S = neighbor_list("ijS", atoms, contract["cutoff"])
    if n > cap_n or len(i) > cap_e:
        raise ValueError(f"{n} atoms and {len(i)} edges exceed the artifact's capacities {cap_n} and {cap_e}")
    index = {s: k for k, s in enumerate(contract["species"])}
    dtype = np.float64 if contract["dtype"] == "float64" else np.float32
    pos = np.zeros((cap_n, 3), dtype)
    pos[:n] = atoms.positions
    species = np.zeros(cap_n, np.int32)
    species[:n] = [index[s] for s in atoms.get_chemical_symbols()]
    senders, receivers, shifts = (np.zeros(cap_e, np.int32), np.zeros(cap_e, np.int32), np.zeros((cap_e, 3), np.int32))
    senders[: len(i)], receivers[: len(i)], shifts[: len(i)] = j, i, S
    return (pos, species, np.asarray(atoms.cell.array, dtype), senders, receivers, shifts,
            np.int32(n), np.int32(len(i)))
