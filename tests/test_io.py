"""Reading labelled data: custom keys, and every rejection with file, frame and problem named."""

import subprocess
import sys

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write

from legato_jax.data.io import LabelKeys, read_frames
from legato_jax.errors import DataError
from tests.conftest import labelled, random_cell_atoms


def test_reads_calculator_labels(small_dataset):
    path, images = small_dataset
    frames = read_frames(path)
    assert len(frames) == len(images)
    for f, a in zip(frames, images):
        assert f.energy == pytest.approx(a.get_potential_energy())
        np.testing.assert_allclose(f.forces, a.get_forces(), atol=1e-7)
        np.testing.assert_allclose(f.stress, a.get_stress(voigt=False), atol=1e-9)


def test_reads_custom_keys(tmp_path, rng):
    a = random_cell_atoms(rng)
    a.info["REF_energy"] = -1.5
    a.arrays["REF_forces"] = rng.normal(size=(len(a), 3))
    write(tmp_path / "ref.extxyz", a, format="extxyz")
    f = read_frames(tmp_path / "ref.extxyz", LabelKeys("REF_energy", "REF_forces", "REF_stress"))[0]
    assert f.energy == -1.5 and f.stress is None
    np.testing.assert_allclose(f.forces, a.arrays["REF_forces"], atol=1e-7)


def _write_bad(tmp_path, atoms_list, name="bad.extxyz"):
    path = tmp_path / name
    write(path, atoms_list, format="extxyz")
    return path


def _good(rng):
    return labelled(random_cell_atoms(rng))


def test_missing_energy(tmp_path, rng):
    a = _good(rng)
    b = random_cell_atoms(rng)
    b.arrays["forces"] = np.zeros((len(b), 3))
    path = _write_bad(tmp_path, [a, b])
    with pytest.raises(DataError, match=r"bad.extxyz, frame 1: no energy under key 'energy'.*--energy-key"):
        read_frames(path)


def test_missing_forces(tmp_path, rng):
    b = random_cell_atoms(rng)
    b.info["REF_energy"] = 1.0
    path = _write_bad(tmp_path, [b])
    with pytest.raises(DataError, match=r"frame 0: no forces under key 'forces'"):
        read_frames(path, LabelKeys(energy="REF_energy"))


def test_force_shape_mismatch(tmp_path, rng):
    b = random_cell_atoms(rng)
    b.info["REF_energy"] = 1.0
    b.info["REF_forces"] = np.zeros(6)  # a per-frame value where per-atom forces are expected
    path = _write_bad(tmp_path, [b])
    with pytest.raises(DataError, match=r"frame 0: forces 'REF_forces' have shape \(6,\); expected \(12, 3\)"):
        read_frames(path, LabelKeys("REF_energy", "REF_forces"))


@pytest.mark.parametrize("what", ["energy", "forces", "stress", "positions"])
def test_non_finite_values(tmp_path, rng, what):
    a = _good(rng)
    res = dict(a.calc.results)
    if what == "energy":
        res["energy"] = np.nan
    elif what == "forces":
        res["forces"] = res["forces"].copy()
        res["forces"][3, 1] = np.inf
    elif what == "stress":
        res["stress"] = res["stress"].copy()
        res["stress"][2] = np.nan
    else:
        a.positions[2, 0] = np.nan
    a.calc = SinglePointCalculator(a, **res)
    path = _write_bad(tmp_path, [_good(rng), a])
    with pytest.raises(DataError, match=rf"frame 1: {what}.*(not finite|NaN or inf)"):
        read_frames(path)


def test_unknown_species_with_type_map(tmp_path, rng):
    a = labelled(random_cell_atoms(rng, symbols="HNO"))
    path = _write_bad(tmp_path, [a])
    assert read_frames(path)  # no type map: accepted
    with pytest.raises(DataError, match=r"frame 0: unknown species \['O'\]; the type map is \['H', 'N'\]"):
        read_frames(path, type_map=["H", "N"])


def test_zero_and_negative_volume_cells(tmp_path, rng):
    a = _good(rng)
    flat = a.copy()
    flat.cell[2] = flat.cell[0] + flat.cell[1]
    left = a.copy()
    left.cell[[0, 1]] = left.cell[[1, 0]]
    for k, atoms in enumerate([flat, left]):
        atoms.calc = SinglePointCalculator(atoms, energy=0.0, forces=np.zeros((len(atoms), 3)))
        path = _write_bad(tmp_path, [atoms], name=f"cell{k}.extxyz")
        with pytest.raises(DataError, match=r"frame 0: cell has zero or negative volume"):
            read_frames(path)


def test_atoms_too_close(tmp_path, rng):
    a = _good(rng)
    close = a.copy()
    close.positions[5] = close.positions[4] + [0.3, 0.0, 0.0]
    close.calc = SinglePointCalculator(close, energy=0.0, forces=np.zeros((len(close), 3)))
    path = _write_bad(tmp_path, [a, a, close])
    with pytest.raises(DataError, match=r"frame 2: atoms 4 and 5 are 0.300 Å apart, closer than the minimum distance 0.5 Å"):
        read_frames(path)
    assert len(read_frames(path, min_distance=0.2)) == 3


def test_too_close_through_the_periodic_boundary(tmp_path):
    a = Atoms("HH", positions=[[0.1, 1, 1], [3.8, 1, 1]], cell=[4, 4, 4], pbc=True)
    a.calc = SinglePointCalculator(a, energy=0.0, forces=np.zeros((2, 3)))
    path = _write_bad(tmp_path, [a])
    with pytest.raises(DataError, match=r"0.300 Å apart"):
        read_frames(path)


def test_empty_missing_and_unreadable_files(tmp_path):
    empty = tmp_path / "empty.extxyz"
    empty.write_text("")
    with pytest.raises(DataError, match=r"empty.extxyz: file is empty"):
        read_frames(empty)
    with pytest.raises(DataError, match=r"nothere.extxyz: no such file"):
        read_frames(tmp_path / "nothere.extxyz")
    junk = tmp_path / "junk.extxyz"
    junk.write_text("this is not\nan xyz file\n")
    with pytest.raises(DataError, match=r"junk.extxyz: cannot be read by ASE"):
        read_frames(junk)


def test_cli_reports_one_line_and_exits_nonzero(tmp_path, rng):
    b = random_cell_atoms(rng)
    path = _write_bad(tmp_path, [b])
    proc = subprocess.run(
        [sys.executable, "-m", "legato_jax.cli.main", "data", "inspect", str(path)],
        capture_output=True, text=True,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "frame 0: no energy" in lines[0]


@pytest.mark.parametrize("suffix,opener", [(".xz", "lzma"), (".gz", "gzip"), (".bz2", "bz2")])
def test_compressed_files_read_like_plain_ones(small_dataset, suffix, opener):
    import importlib

    path, _ = small_dataset
    packed = path.with_name(path.name + suffix)
    with importlib.import_module(opener).open(packed, "wb") as fh:
        fh.write(path.read_bytes())
    plain, comp = read_frames(path), read_frames(packed)
    assert len(plain) == len(comp) == 10
    for k, (a, b) in enumerate(zip(plain, comp)):
        assert a.energy == b.energy and np.array_equal(a.forces, b.forces) and np.array_equal(a.cell, b.cell)
        assert b.source.endswith(f"{suffix}, frame {k}")
