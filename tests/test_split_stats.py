"""Deterministic block splits and the dataset statistics `inspect` prints."""

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest
from ase.neighborlist import neighbor_list as ase_neighbor_list

from legato_jax.data.cell import perpendicular_widths
from legato_jax.data.io import read_frames
from legato_jax.data.split import block_split, read_split
from legato_jax.data.stats import dataset_statistics
from legato_jax.errors import ConfigError, DataError


def test_block_split_is_deterministic_disjoint_and_complete():
    a = block_split(1003, (0.8, 0.1, 0.1), seed=7, block=10)
    assert a == block_split(1003, (0.8, 0.1, 0.1), seed=7, block=10)
    assert a != block_split(1003, (0.8, 0.1, 0.1), seed=8, block=10)
    allidx = sorted(a["train"] + a["validation"] + a["test"])
    assert allidx == list(range(1003))
    assert abs(len(a["train"]) - 802) <= 10 and abs(len(a["test"]) - 100) <= 10
    for name, idx in a.items():  # whole blocks only
        assert set(k // 10 for k in idx).isdisjoint(
            set(k // 10 for n2, i2 in a.items() if n2 != name for k in i2)
        )
    with pytest.raises(ConfigError, match="fractions"):
        block_split(10, (0.5, 0.5, 0.5))


def test_statistics_match_direct_computation(small_dataset):
    path, images = small_dataset
    frames = read_frames(path)
    r = 3.5
    s = dataset_statistics(frames, r_max=r)
    assert s["frames"] == 10 and s["atoms_total"] == 120
    assert s["species_counts"] == {"H": 60, "N": 60}
    e = np.array([a.get_potential_energy() / len(a) for a in images])
    assert s["energy_per_atom"]["mean"] == pytest.approx(e.mean())
    assert s["energy_per_atom"]["std"] == pytest.approx(e.std())
    counts = np.concatenate([np.bincount(ase_neighbor_list("i", a, r), minlength=len(a)) for a in images])
    assert s["neighbours"]["mean"] == pytest.approx(counts.mean())
    assert s["neighbours"]["max"] == counts.max()
    dmin = min(ase_neighbor_list("d", a, r).min() for a in images)
    assert s["min_distance"] == pytest.approx(dmin)
    h = np.concatenate([a.get_forces()[a.numbers == 1] for a in images])
    assert s["force_rms_per_species"]["H"] == pytest.approx(np.sqrt((h**2).mean()))
    assert s["frames_with_stress"] == 10
    # 5-7 Å cells are narrower than 2 x 3.5 Å in some frames; never wider than 2 x 7.5 Å
    widths = np.array([perpendicular_widths(a.cell.array) for a in images])
    assert bool(s["warnings"]) == bool((widths < 2 * r).any())
    assert not dataset_statistics(frames, r_max=widths.min() / 2 - 0.01)["warnings"]


def test_constraint_altered_forces_are_flagged(small_dataset):
    from ase.constraints import FixCom

    path, images = small_dataset
    frames = read_frames(path)
    r = 1.0  # no cell-width warning
    assert not dataset_statistics(frames, r_max=r)["warnings"]
    a = images[0].copy()
    a.set_constraint(FixCom())  # what ASE MD with FixCom stores when get_forces() is called
    altered = a.constraints[0]
    f = images[0].get_forces().copy()
    altered.adjust_forces(a, f)
    frames[0] = dataclasses.replace(frames[0], forces=f)
    warnings = dataset_statistics(frames, r_max=r)["warnings"]
    assert len(warnings) == 1 and "net force" in warnings[0] and "FixCom" in warnings[0]


def test_cli_inspect_json_and_split(small_dataset, tmp_path):
    path, _ = small_dataset
    run = lambda *a: subprocess.run([sys.executable, "-m", "legato_jax.cli.main", *a], capture_output=True, text=True)
    p = run("data", "inspect", str(path), "--json", "--r-max", "3.5")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["frames"] == 10
    out = tmp_path / "s.json"
    p = run("data", "split", str(path), "--output", str(out), "--block", "2", "--seed", "1")
    assert p.returncode == 0, p.stderr
    split = read_split(out, 10)
    assert sorted(sum(split.values(), [])) == list(range(10))
    with pytest.raises(DataError, match="outside"):
        read_split(out, 5)
