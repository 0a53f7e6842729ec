"""The ASE calculator: ASE's own finite differences, bucket reuse, model files, bad input."""

import jax
import numpy as np
import pytest
from ase.build import molecule
from ase.calculators.calculator import PropertyNotImplementedError
from ase.calculators.fd import calculate_numerical_forces, calculate_numerical_stress

from legato_jax.calculators import LegatoCalculator
from legato_jax.errors import ConfigError, DataError
from legato_jax.model.config import AllegroConfig, ModelStats
from legato_jax.model.io import load_model, save_model
from tests.conftest import random_cell_atoms

SMALL = AllegroConfig(r_max=3.5, num_layers=2, l_max=1, num_channels=4, two_body_mlp=(8, 16), latent_mlp=(16,),
                      edge_energy_mlp=(8,), num_bessel=4, dtype="float64")
STATS = ModelStats(avg_num_neighbors=6.0, species_scale=(0.5, 0.8), species_shift=(-1.0, -2.0))


@pytest.fixture
def calc():
    with jax.enable_x64(True):
        return LegatoCalculator.from_config(SMALL, seed=1, stats=STATS)


def test_forces_and_stress_agree_with_ase_numerical_derivatives(calc, rng):
    atoms = random_cell_atoms(rng, n=8, min_len=3.5, max_len=4.5)
    atoms.calc = calc
    f = atoms.get_forces()
    np.testing.assert_allclose(f, calculate_numerical_forces(atoms, eps=1e-5), atol=1e-6)
    np.testing.assert_allclose(atoms.get_stress(), calculate_numerical_stress(atoms, eps=1e-5), atol=1e-7)
    assert atoms.get_potential_energy() == pytest.approx(atoms.get_potential_energies().sum())
    assert atoms.get_potential_energy() == atoms.calc.get_property("free_energy")


def test_buckets_are_reused_across_similar_systems(calc, rng):
    atoms = random_cell_atoms(rng, n=10, min_len=4.0, max_len=4.5)
    atoms.calc = calc
    atoms.get_forces()
    for k in range(5):
        atoms.rattle(0.01, seed=k)
        atoms.get_forces()
    assert len(calc.shapes_compiled) == 1
    bigger = atoms.repeat((2, 1, 1))
    bigger.calc = calc
    bigger.get_forces()  # another atom count: a new bucket
    assert len(calc.shapes_compiled) == 2


def test_molecule_has_no_stress_and_unknown_species_is_refused(calc):
    mol = molecule("NH3")
    mol.calc = calc
    assert np.isfinite(mol.get_potential_energy())
    with pytest.raises(PropertyNotImplementedError):
        mol.get_stress()
    water = molecule("H2O")
    water.calc = calc
    with pytest.raises(DataError, match=r"unknown species \['O'\]"):
        water.get_potential_energy()


def test_model_file_round_trip(calc, tmp_path, rng):
    path = save_model(tmp_path / "m.npz", calc.potential, calc.params, extra={"note": "x"})
    potential, params, extra = load_model(path)
    assert potential == calc.potential and extra == {"note": "x"}
    atoms = random_cell_atoms(rng, n=6, min_len=4.0, max_len=4.5)
    atoms.calc = calc
    e0 = atoms.get_potential_energy()
    b = atoms.copy()
    b.calc = LegatoCalculator.from_file(path)
    assert b.get_potential_energy() == pytest.approx(e0, rel=1e-12)
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(ConfigError, match="not a legato model file"):
        load_model(tmp_path / "junk.npz")


def test_calculator_drives_velocity_verlet_like_the_direct_api(calc, rng):
    from ase import units
    from ase.md.verlet import VelocityVerlet

    from legato_jax.data.graph import TypeMap, atoms_to_graph, collate

    atoms = random_cell_atoms(rng, n=8, min_len=4.0, max_len=4.5)
    atoms.set_momenta(rng.normal(size=(8, 3)) * 0.05)
    atoms.calc = calc
    dyn = VelocityVerlet(atoms, timestep=0.5 * units.fs)
    predict = jax.jit(calc.potential.predict)
    for _ in range(4):
        dyn.run(1)
        fg = atoms_to_graph(atoms, TypeMap(SMALL.species), SMALL.r_max)
        with jax.enable_x64(True):
            out = predict(calc.params, collate([fg], 16, fg.n_edge + 5, 2, SMALL.r_max, dtype=np.float64).graph)
        np.testing.assert_allclose(atoms.get_forces(), np.asarray(out.forces[:8]), atol=1e-12)
        assert atoms.get_potential_energy() == pytest.approx(float(out.energy[0]), rel=1e-12)
    assert np.all(np.isfinite(atoms.positions))
