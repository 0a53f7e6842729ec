"""The GFN1-xTB ammonia generator on a tiny run: intact molecules, finite labels, exact resume."""

import numpy as np
import pytest
from ase.io import read

from legato_jax.data.ammonia import box_length, molecules_intact, random_ammonia_packing
from legato_jax.data.generate import AmmoniaGenConfig, generate_ammonia
from legato_jax.data.io import read_frames
from legato_jax.errors import ConfigError


def tiny(output) -> AmmoniaGenConfig:
    return AmmoniaGenConfig(
        output=str(output), n_molecules=4, temperatures=(200.0, 300.0), frames_per_temperature=3,
        stride=2, thermalize_steps=6, relax_steps=5, seed=3,
    )


def test_random_packing_has_density_and_intact_molecules(rng):
    atoms = random_ammonia_packing(16, 0.68, rng)
    assert len(atoms) == 64 and molecules_intact(atoms)
    density = atoms.get_masses().sum() / 6.02214076e23 / (atoms.get_volume() * 1e-24)
    assert density == pytest.approx(0.68, rel=1e-3)
    assert atoms.cell.lengths() == pytest.approx([box_length(16, 0.68)] * 3)


def test_generate_resume_equals_uninterrupted_run(tmp_path):
    whole = tiny(tmp_path / "whole.extxyz")
    reports = generate_ammonia(whole, progress=False)
    assert [r.frames for r in reports] == [3, 3]
    assert all(np.isfinite(r.mean_temperature) for r in reports)

    cut = tiny(tmp_path / "cut.extxyz")
    partial = generate_ammonia(cut, max_new_frames=1, progress=False)
    assert [r.frames for r in partial] == [1, 1]
    assert not (tmp_path / "cut.extxyz").exists()
    # simulate a kill during a write: half a frame after the last checkpoint
    with open(tmp_path / "cut.extxyz.parts" / "segment00.extxyz", "a") as fh:
        fh.write("16\nLattice=\"1 0 0 0 1 0 0 0 1\" Properties=species:S:1:pos:R:3\nN 0.0 0.")
    generate_ammonia(cut, max_new_frames=1, progress=False)
    generate_ammonia(cut, progress=False)

    a = read(whole.output, ":")
    b = read(cut.output, ":")
    assert len(a) == len(b) == 6
    for fa, fb in zip(a, b):
        assert fa.info["md_step"] == fb.info["md_step"]
        np.testing.assert_allclose(fa.positions, fb.positions, atol=1e-6)
        assert fa.get_potential_energy() == pytest.approx(fb.get_potential_energy(), abs=1e-6)
    frames = read_frames(cut.output, type_map=["H", "N"])
    for f, atoms in zip(frames, b):
        assert molecules_intact(atoms)
        assert np.all(np.isfinite(f.forces)) and f.stress is not None and np.all(np.isfinite(f.stress))
    assert [f.info["temperature_target"] for f in frames] == [200.0] * 3 + [300.0] * 3
    # the stored labels are the calculator's, untouched by the MD's centre-of-mass constraint
    from tblite.ase import TBLite

    fresh = b[-1].copy()
    fresh.calc = TBLite(method="GFN1-xTB", verbosity=0)
    np.testing.assert_allclose(fresh.get_forces(), b[-1].get_forces(), atol=1e-4)
    assert fresh.get_potential_energy() == pytest.approx(b[-1].get_potential_energy(), abs=1e-6)
    np.testing.assert_allclose(b[-1].get_forces().sum(axis=0), 0.0, atol=1e-6)


def test_resume_with_other_settings_is_refused(tmp_path):
    cfg = tiny(tmp_path / "x.extxyz")
    generate_ammonia(cfg, max_new_frames=1, progress=False)
    other = AmmoniaGenConfig(**{**cfg.__dict__, "stride": 3})
    with pytest.raises(ConfigError, match=r"other settings \(stride: 2 -> 3\).*delete"):
        generate_ammonia(other, progress=False)
    with pytest.raises(ConfigError, match="invalid --stride"):
        generate_ammonia(AmmoniaGenConfig(**{**cfg.__dict__, "stride": 0}), progress=False)
