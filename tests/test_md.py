"""MD foundations: the jax-md energy bridge equals the calculator, in wide and in narrow cells."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ase.io import read

from legato_jax.calculators import LegatoCalculator
from legato_jax.data.graph import TypeMap, atoms_to_graph, collate
from legato_jax.errors import ConfigError
from legato_jax.md.energy import model_energy
from legato_jax.model.config import AllegroConfig, ModelStats
from legato_jax.model.potential import Potential
from legato_jax.data.ammonia import AMMONIA_CELL

CFG = AllegroConfig(r_max=3.5, num_layers=2, num_channels=4, two_body_mlp=(8, 16), latent_mlp=(16,),
                    edge_energy_mlp=(8,), dtype="float64")
STATS = ModelStats(avg_num_neighbors=20.0, species_scale=(0.01, 0.01), species_shift=(-1.0, -1.0))


@pytest.fixture(scope="module")
def setup():
    with jax.enable_x64(True):
        atoms = read(AMMONIA_CELL)  # a frame of the shipped data (ASE reads the whole .xz for one frame)
        pot = Potential(CFG, STATS)
        tm = TypeMap(CFG.species)
        fg = atoms_to_graph(atoms, tm, CFG.r_max)
        params = pot.init(jax.random.PRNGKey(0), collate([fg], 72, fg.n_edge + 10, 2, CFG.r_max).graph)
        return atoms, pot, params, tm


def test_jax_md_energy_and_forces_equal_the_calculator(setup):
    atoms, pot, params, tm = setup
    with jax.enable_x64(True):
        system = model_energy(pot, params, tm.indices(atoms.numbers), atoms.cell.array)
        R = jnp.asarray(atoms.positions)
        nbrs = system.neighbor_fn.allocate(R)
        e = float(system.energy_fn(R, nbrs))
        f = np.asarray(jax.grad(lambda r: -system.energy_fn(r, nbrs))(R))
    atoms.calc = LegatoCalculator(pot, params)
    assert e == pytest.approx(atoms.get_potential_energy(), rel=1e-12)
    np.testing.assert_allclose(f, atoms.get_forces(), atol=1e-10)


@pytest.mark.parametrize("shear", [0.0, 0.3])
def test_a_narrow_cell_takes_every_image_and_equals_the_calculator(setup, shear):
    """r_max 4.5 + skin 0.5 in an 8.73 Å cell (orthorhombic, then sheared): several images of one
    neighbour are in range, which minimum image would miss."""
    atoms, pot, params, tm = setup
    atoms = atoms.copy()
    atoms.set_cell(atoms.cell.array @ np.array([[1.0, 0.0, 0.0], [shear, 1.0, 0.0], [0.0, 0.0, 1.0]]), scale_atoms=True)
    narrow = Potential(AllegroConfig(**{**CFG.to_dict(), "r_max": 4.5}), STATS)
    with jax.enable_x64(True):
        system = model_energy(narrow, params, tm.indices(atoms.numbers), atoms.cell.array)
        R = jnp.asarray(atoms.positions) + 3.0 * jnp.asarray(atoms.cell.array[0])  # unwrapped positions
        nbrs = system.neighbor_fn.allocate(R)
        e, stress = system.energy_stress_fn(R, nbrs)
        f = np.asarray(jax.grad(lambda r: -system.energy_fn(r, nbrs))(R))
    atoms.calc = LegatoCalculator(narrow, params)
    assert float(e) == pytest.approx(atoms.get_potential_energy(), rel=1e-12)
    np.testing.assert_allclose(f, atoms.get_forces(), atol=1e-10)
    np.testing.assert_allclose(np.asarray(stress), atoms.get_stress(voigt=False), atol=1e-12)


def test_a_cell_too_thin_for_any_search_is_one_line(setup):
    atoms, pot, params, tm = setup
    thin = atoms.cell.array * np.array([[1.0], [1.0], [0.05]])
    with pytest.raises(ConfigError, match=r"^structure: cell width 0\.4\d+ Å along lattice vector 2 .*replicate") as err:
        model_energy(pot, params, tm.indices(atoms.numbers), thin)
    assert "\n" not in str(err.value)


def test_jax_md_stress_equals_the_calculator(setup):
    atoms, pot, params, tm = setup
    atoms = atoms.copy()
    atoms.set_cell(atoms.cell.array @ np.array([[1.0, 0.0, 0.0], [0.3, 1.0, 0.0], [0.0, 0.0, 1.02]]), scale_atoms=True)
    with jax.enable_x64(True):
        system = model_energy(pot, params, tm.indices(atoms.numbers), atoms.cell.array)  # triclinic: periodic_general
        R = jnp.asarray(atoms.positions)
        e, stress = system.energy_stress_fn(R, system.neighbor_fn.allocate(R))
    atoms.calc = LegatoCalculator(pot, params)
    assert float(e) == pytest.approx(atoms.get_potential_energy(), rel=1e-12)
    np.testing.assert_allclose(np.asarray(stress), atoms.get_stress(voigt=False), atol=1e-12)
