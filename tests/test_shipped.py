"""The main job on the shipped dataset and models: it runs end to end, and the models reproduce
their recorded test-split errors on the way."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_demo_runs_on_the_shipped_defaults(tmp_path):
    # the default MD (512 atoms, 300 steps) and time-to-failure part (64, 128 and 256 atoms, 4
    # replicas, up to 250 steps) take minutes: fewer steps and smaller systems here, every part runs
    proc = subprocess.run([sys.executable, "-m", "legato_jax.cli.main", "demo", "--out", str(tmp_path),
                           "--md-steps", "120", "--md-molecules", "32", "--ttf-sizes", "64", "128",
                           "--ttf-replicas", "2",
                           "--ttf-max-steps", "20"],
                          cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "frames                1500" in proc.stdout
    assert proc.stdout.count("on the test split") == 2
    for name in ("allegro", "legato"):  # the shipped models reproduce their recorded test errors
        recorded = json.loads((ROOT / "models" / name / "test_metrics.json").read_text())
        measured = json.loads((tmp_path / f"metrics_{name}.json").read_text())
        for key in ("energy_per_atom_mae_meV", "forces_mae_meV_per_A", "forces_rmse_meV_per_A"):
            assert measured[key] == pytest.approx(recorded[key], rel=1e-3), (name, key)
    assert (tmp_path / "data_summary.png").exists() and (tmp_path / "parity_legato.png").exists()
    assert proc.stdout.count("stage 1 nve") == 2 and (tmp_path / "md_thermo.png").exists()
    assert (tmp_path / "md_allegro.csv").exists() and (tmp_path / "md_legato.csv").exists()
    assert (tmp_path / "md_rdf.png").exists() and (tmp_path / "md_legato.extxyz").exists()
    assert "[4/4] time to failure" in proc.stderr
    assert "beta of t_failure" in proc.stdout and "legato vs allegro" in proc.stdout
    ttf = json.loads((tmp_path / "ttf.json").read_text())
    assert set(ttf["models"]) == {"allegro", "legato"} and set(ttf["models"]["legato"]["sizes"]) == {"64", "128"}
    assert (tmp_path / "ttf.png").exists()
