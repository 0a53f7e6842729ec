"""Allegro physics: symmetry, forces and stress as derivatives, padding, options."""

import numpy as np
import pytest
import jax
import jax.numpy as jnp
from ase import Atoms
from scipy.spatial.transform import Rotation

from legato_jax.data.graph import TypeMap, collate, frame_graph
from legato_jax.data.io import frame_from_atoms
from legato_jax.errors import ConfigError
from legato_jax.model.config import AllegroConfig, ModelStats
from legato_jax.model.potential import Potential, parameter_count
from tests.conftest import labelled, random_cell_atoms

SMALL = dict(r_max=3.5, num_layers=2, l_max=1, num_channels=4, two_body_mlp=(8, 16), latent_mlp=(16,),
             edge_energy_mlp=(8,), num_bessel=4, polynomial_p=6)


def make(atoms, dtype="float64", **over):
    cfg = AllegroConfig(**{**SMALL, "dtype": dtype, **over})
    pot = Potential(cfg, ModelStats(avg_num_neighbors=8.0, species_scale=(0.7, 1.3), species_shift=(-0.2, 0.4)))
    return pot


def batch_of(atoms_list, cutoff, pad_nodes=3, pad_edges=17):
    gs = [frame_graph(frame_from_atoms(labelled(a, stress=False), "t", min_distance=0.0), TypeMap(("H", "N")), cutoff)
          for a in atoms_list]
    return collate(gs, sum(g.n_node for g in gs) + pad_nodes, sum(g.n_edge for g in gs) + pad_edges,
                   len(gs) + 1, cutoff, dtype=np.float64)


@pytest.fixture
def system(rng):
    return random_cell_atoms(rng, n=10, min_len=3.2, max_len=4.5)  # cells shorter than 2 r_max


def predict(pot, params, atoms_list, **kw):
    with jax.enable_x64(pot.config.dtype == "float64"):
        b = batch_of(atoms_list, pot.config.r_max, **kw)
        return jax.tree_util.tree_map(np.asarray, jax.jit(pot.predict)(params, b.graph))


def init(pot, atoms, seed=0):
    with jax.enable_x64(pot.config.dtype == "float64"):
        return pot.init(jax.random.PRNGKey(seed), batch_of([atoms], pot.config.r_max).graph)


@pytest.mark.parametrize("parity,l_max", [("o3_full", 1), ("o3_full", 2), ("o3_restricted", 3), ("so3", 2), ("o3_full", 0)])
def test_rotation_invariance_and_equivariance(system, parity, l_max):
    pot = make(system, parity=parity, l_max=l_max)
    params = init(pot, system)
    R = Rotation.random(random_state=7).as_matrix()
    rot = system.copy()
    rot.positions = system.positions @ R.T
    rot.cell = system.cell.array @ R.T
    p0, p1 = predict(pot, params, [system]), predict(pot, params, [rot])
    assert abs(p0.energy[0]) > 1e-3
    np.testing.assert_allclose(p1.energy[0], p0.energy[0], rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(p1.forces[:10], p0.forces[:10] @ R.T, atol=1e-9)
    np.testing.assert_allclose(p1.stress[0], R @ p0.stress[0] @ R.T, atol=1e-10)


def test_inversion_invariance_of_o3_model(system):
    """r -> -r maps the periodic lattice onto itself; an O(3) model's energy is unchanged."""
    inv = system.copy()
    inv.positions = -system.positions
    pot = make(system, parity="o3_full")
    params = init(pot, system)
    np.testing.assert_allclose(predict(pot, params, [inv]).energy[0], predict(pot, params, [system]).energy[0], rtol=1e-10)


def test_translation_and_permutation(system, rng):
    pot = make(system)
    params = init(pot, system)
    p0 = predict(pot, params, [system])
    moved = system.copy()
    moved.positions += rng.normal(size=3) * 3.0
    np.testing.assert_allclose(predict(pot, params, [moved]).energy[0], p0.energy[0], rtol=1e-10)
    perm = rng.permutation(len(system))
    shuffled = system[perm]
    p1 = predict(pot, params, [shuffled])
    np.testing.assert_allclose(p1.energy[0], p0.energy[0], rtol=1e-10)
    np.testing.assert_allclose(p1.forces[: len(system)], p0.forces[perm], atol=1e-10)
    np.testing.assert_allclose(p1.energies[: len(system)], p0.energies[perm], atol=1e-10)


def test_forces_are_minus_gradient_by_finite_differences(system):
    pot = make(system)
    params = init(pot, system)
    f = predict(pot, params, [system]).forces
    h = 1e-5
    for atom, axis in [(0, 0), (3, 1), (7, 2)]:
        plus, minus = system.copy(), system.copy()
        plus.positions[atom, axis] += h
        minus.positions[atom, axis] -= h
        fd = -(predict(pot, params, [plus]).energy[0] - predict(pot, params, [minus]).energy[0]) / (2 * h)
        assert f[atom, axis] == pytest.approx(fd, rel=1e-6, abs=1e-8)


def test_stress_is_strain_derivative_by_finite_differences(system):
    pot = make(system)
    params = init(pot, system)
    s = predict(pot, params, [system]).stress[0]
    h = 1e-6
    for (a, b) in [(0, 0), (1, 2), (0, 1)]:
        eps = np.zeros((3, 3))
        eps[a, b] = eps[b, a] = h if a != b else h
        def strained(e):
            x = system.copy()
            x.set_cell(system.cell.array @ (np.eye(3) + e), scale_atoms=True)
            return predict(pot, params, [x]).energy[0]
        fd = (strained(eps) - strained(-eps)) / (2 * h) / system.get_volume()
        expected = s[a, b] * (2 if a != b else 1)
        assert expected == pytest.approx(fd, rel=1e-5, abs=1e-9)


def test_padded_batch_equals_single_frames(rng, system):
    other = random_cell_atoms(rng, n=7, min_len=4.0, max_len=5.0)
    pot = make(system)
    params = init(pot, system)
    both = predict(pot, params, [system, other], pad_nodes=5, pad_edges=40)
    a = predict(pot, params, [system], pad_nodes=1, pad_edges=0)
    b = predict(pot, params, [other], pad_nodes=9, pad_edges=3)
    np.testing.assert_allclose(both.energy[:2], [a.energy[0], b.energy[0]], rtol=1e-10)
    np.testing.assert_allclose(both.forces[:10], a.forces[:10], atol=1e-10)
    np.testing.assert_allclose(both.forces[10:17], b.forces[:7], atol=1e-10)
    assert np.all(both.forces[17:] == 0) and np.all(both.energies[17:] == 0) and both.energy[2] == 0
    assert np.isclose(both.energies[:10].sum(), both.energy[0])


def test_energy_is_smooth_at_the_cutoff():
    pot = make(None, r_max=3.0)
    pair = lambda d: Atoms("HN", positions=[[0, 0, 0], [d, 0, 0]], cell=[20, 20, 20], pbc=False)
    params = init(pot, pair(2.0))
    e_in = predict(pot, params, [pair(3.0 - 1e-4)])
    e_out = predict(pot, params, [pair(3.0 + 1e-4)])
    shift = predict(pot, params, [pair(10.0)]).energy[0]
    assert abs(e_in.energy[0] - shift) < 1e-12 and abs(e_out.energy[0] - shift) == 0
    assert np.abs(e_in.forces[:2]).max() < 1e-6  # u ~ (1 - r/r_max)^3 near the cutoff


def test_float32_default_and_paper_parameter_count(system):
    pot = Potential(AllegroConfig(), ModelStats.default(2))
    b = batch_of([random_cell_atoms(np.random.default_rng(0), n=8, min_len=6.5, max_len=7.0)], 6.0)
    params = pot.init(jax.random.PRNGKey(0), b.graph)
    assert parameter_count(params) == 131_496  # reference hand count 133.5k minus the dead last linear (2,048)
    assert all(x.dtype == jnp.float32 for x in jax.tree_util.tree_leaves(params))
    out = jax.jit(pot.predict)(params, b.graph)
    assert out.forces.dtype == jnp.float32 and np.all(np.isfinite(out.forces))


def test_config_rejects_unknown_keys_and_bad_values():
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['lmax'\]; valid keys are"):
        AllegroConfig.from_dict({"lmax": 2})
    with pytest.raises(ConfigError, match="'parity'"):
        AllegroConfig(parity="o3")
    with pytest.raises(ConfigError, match="'latent_mlp'"):
        AllegroConfig(latent_mlp=(64,))
    with pytest.raises(ConfigError, match="model option 'per_layer_cutoffs': is not supported yet"):
        AllegroConfig.from_dict({"per_layer_cutoffs": [6.0, 5.0, 4.0, 4.0]})


def test_mirror_reflection_invariance(system):
    """x -> -x; the reflected lattice is re-expressed with -c so the cell stays right-handed."""
    M = np.diag([-1.0, 1.0, 1.0])
    ref = system.copy()
    ref.positions = system.positions @ M
    ref.cell = np.diag([1.0, 1.0, -1.0]) @ (system.cell.array @ M)
    assert np.linalg.det(ref.cell.array) > 0
    pot = make(system, parity="o3_full", l_max=2)
    params = init(pot, system)
    p0, p1 = predict(pot, params, [system]), predict(pot, params, [ref])
    np.testing.assert_allclose(p1.energy[0], p0.energy[0], rtol=1e-9)
    np.testing.assert_allclose(p1.forces[:10], p0.forces[:10] @ M, atol=1e-9)


def test_periodic_image_and_supercell(system):
    pot = make(system)
    params = init(pot, system)
    p0 = predict(pot, params, [system])
    moved = system.copy()
    moved.positions[3] += system.cell.array[0] - 2 * system.cell.array[2]  # same atom, another image
    np.testing.assert_allclose(predict(pot, params, [moved]).energy[0], p0.energy[0], rtol=1e-10)
    big = system.repeat((2, 2, 2))
    pb = predict(pot, params, [big])
    np.testing.assert_allclose(pb.energy[0], 8 * p0.energy[0], rtol=1e-9)
    np.testing.assert_allclose(pb.forces[: len(system)], p0.forces[: len(system)], atol=1e-9)
    np.testing.assert_allclose(pb.stress[0], p0.stress[0], atol=1e-10)


def test_float32_rotation_invariance(system):
    pot = make(system, dtype="float32")
    params = init(pot, system)
    R = Rotation.random(random_state=3).as_matrix()
    rot = system.copy()
    rot.positions = system.positions @ R.T
    rot.cell = system.cell.array @ R.T
    p0, p1 = predict(pot, params, [system]), predict(pot, params, [rot])
    assert p0.energy.dtype == np.float32
    np.testing.assert_allclose(p1.energy[0], p0.energy[0], rtol=1e-5)
    scale = np.abs(p0.forces).max()
    np.testing.assert_allclose(p1.forces[:10] / scale, (p0.forces[:10] @ R.T) / scale, atol=1e-5)


def test_model_info_command_prints_the_paper_count(capsys):
    from legato_jax.cli.main import main

    assert main(["model", "info", "configs/model/allegro-l1.yaml"]) == 0
    out = capsys.readouterr().out
    assert "131,496 parameters" in out and "layer 1: 1x0e+1x1e+1x1o x SH -> 1x0e+1x1o" in out
