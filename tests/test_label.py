"""`legato data label`: GFN1-xTB labels for a trajectory's frames, resumable, with clear errors."""

import subprocess
import sys

import numpy as np
import pytest
from ase.io import read, write

from legato_jax.data.ammonia import nh3_molecule
from legato_jax.data.label import label_file, reference_calculator
from legato_jax.errors import ConfigError

pytest.importorskip("tblite")


@pytest.fixture
def trajectory(tmp_path):
    rng = np.random.default_rng(0)
    frames = []
    for k in range(5):
        atoms = nh3_molecule()
        atoms.positions += 0.03 * k * rng.normal(size=atoms.positions.shape)
        frames.append(atoms)
    path = tmp_path / "traj.extxyz"
    write(path, frames)
    return path, frames


def test_labels_equal_the_reference_and_a_rerun_adds_only_new_frames(tmp_path, trajectory):
    src, frames = trajectory
    out = tmp_path / "labels.extxyz"
    first = label_file(src, out, every=2)
    assert (first.selected, first.already, first.labelled) == (3, 0, 3)
    again = label_file(src, out)
    assert (again.selected, again.already, again.labelled) == (5, 3, 2)

    labelled = read(out, index=":")
    assert sorted(a.info["source_index"] for a in labelled) == [0, 1, 2, 3, 4]
    calc = reference_calculator("GFN1-xTB")
    for a in labelled:
        ref = frames[a.info["source_index"]].copy()
        ref.calc = calc
        np.testing.assert_allclose(a.positions, ref.positions, atol=1e-6)
        assert a.get_potential_energy() == pytest.approx(ref.get_potential_energy(), abs=1e-5)
        np.testing.assert_allclose(a.get_forces(), ref.get_forces(), atol=1e-5)
        assert a.info["method"] == "GFN1-xTB" and a.info["config_type"] == "labelled_traj"


def test_label_cli_rejects_bad_input_in_one_line(tmp_path, trajectory):
    src, _ = trajectory
    cases = [
        ([str(tmp_path / "missing.extxyz"), "--out", str(tmp_path / "o.extxyz")], "no such file"),
        ([str(src), "--out", str(tmp_path / "o.txt")], "extended XYZ"),
        ([str(src), "--out", str(tmp_path / "o.extxyz"), "--start", "9"], "no frame selected"),
        ([str(src), "--out", str(tmp_path / "o.extxyz"), "--every", "0"], "--every"),
    ]
    for argv, expected in cases:
        run = subprocess.run([sys.executable, "-m", "legato_jax.cli.main", "data", "label", *argv],
                             capture_output=True, text=True)
        assert run.returncode != 0 and "Traceback" not in run.stderr, run.stderr
        assert expected in run.stderr and len(run.stderr.strip().splitlines()) == 1, run.stderr
    with pytest.raises(ConfigError, match="must differ"):
        label_file(src, src)


def test_frames_the_reference_cannot_label_stop_the_run_or_are_left_out_and_listed(tmp_path):
    """An NH3 torn apart by a path integral in a hole: GFN1-xTB's SCF does not converge there."""
    from ase import Atoms

    torn = Atoms("NH3", [[7.214, 7.214, 7.15], [6.959, 6.641, 8.123], [9.952, 6.606, 9.075],
                         [7.281, 5.679, 11.139]], cell=[15.0] * 3, pbc=True)
    intact = nh3_molecule()
    src = tmp_path / "beads.extxyz"
    write(src, [intact, torn, intact])
    out = tmp_path / "labels.extxyz"
    with pytest.raises(ConfigError, match=r"frame 1: GFN1-xTB failed .*--skip-failed"):
        label_file(src, out)
    report = label_file(src, out, skip_failed=True)
    assert (report.selected, report.already, report.labelled, report.failed) == (3, 1, 1, (1,))
    assert sorted(a.info["source_index"] for a in read(out, index=":")) == [0, 2]
