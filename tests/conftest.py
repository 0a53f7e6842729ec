"""Shared fixtures. Several CPU devices are requested before jax is first imported."""

import atexit
import os
import shutil
import tempfile

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("OMP_NUM_THREADS", "1")
if "JAX_COMPILATION_CACHE_DIR" not in os.environ and "PYTEST_XDIST_WORKER" not in os.environ:
    # One persistent XLA cache for the whole session, shared by the xdist workers and every
    # subprocess (they inherit the environment): tests that build the same model programs in new
    # closures or new processes load them instead of compiling again (about half the suite's time).
    _cache = tempfile.mkdtemp(prefix="legato-jax-test-xla-cache-")
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.lj import LennardJones
from ase.calculators.singlepoint import SinglePointCalculator


def pytest_collection_modifyitems(items):
    """Slow tests (the main job, the notebooks) first, so that with two workers (`make test`) the
    longest ones start at once instead of running alone at the end."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def labelled(atoms: Atoms, stress: bool = True, sigma: float = 2.0) -> Atoms:
    """Attach real Lennard-Jones labels (energy, forces, stress) as a single-point calculator."""
    atoms = atoms.copy()
    atoms.calc = LennardJones(sigma=sigma, epsilon=0.01, rc=4.0)
    results = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces()}
    if stress and atoms.pbc.all():
        results["stress"] = atoms.get_stress()
    atoms.calc = SinglePointCalculator(atoms, **results)
    return atoms


def random_cell_atoms(rng: np.random.Generator, n: int = 12, min_len: float = 3.0, max_len: float = 7.0,
                      pbc=True, symbols: str = "HN") -> Atoms:
    """Random triclinic cell with atoms no closer than ~0.9 Å."""
    cell = np.diag(rng.uniform(min_len, max_len, 3)) + rng.uniform(-1.0, 1.0, (3, 3)) * min_len / 4
    for _ in range(1000):
        frac = rng.uniform(0, 1, (n, 3))
        atoms = Atoms(
            [symbols[k % len(symbols)] for k in range(n)], scaled_positions=frac, cell=cell, pbc=pbc
        )
        d = atoms.get_all_distances(mic=bool(np.any(pbc)))
        np.fill_diagonal(d, np.inf)
        if d.min() > 0.9:
            return atoms
    raise RuntimeError("could not place atoms")


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def small_dataset(tmp_path, rng):
    """Ten labelled periodic frames of 12 atoms written to extxyz; returns (path, images)."""
    from ase.io import write

    images = [labelled(random_cell_atoms(rng, n=12, min_len=5.0, max_len=7.0)) for _ in range(10)]
    for k, a in enumerate(images):
        a.info["config_type"] = f"toy_{100 + 50 * (k % 2)}K"
    path = tmp_path / "toy.extxyz"
    write(path, images, format="extxyz")
    return path, images
