"""The shipped dataset and models: they load, and the models reproduce their recorded errors."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from legato_jax.data.graph import TypeMap, frame_graph
from legato_jax.data.io import read_frames
from legato_jax.data.split import read_split
from legato_jax.model.io import load_model
from legato_jax.train.evaluate import error_metrics, predict_frames

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "ammonia.extxyz.xz"
SPLIT = ROOT / "data" / "ammonia.split.json"


@pytest.fixture(scope="module")
def test_frames():
    frames = read_frames(DATA)
    assert len(frames) == 1500
    return [frames[k] for k in read_split(SPLIT, len(frames))["test"]]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["allegro", "legato"])
def test_shipped_model_reproduces_its_recorded_test_errors(name, test_frames):
    folder = ROOT / "models" / name
    recorded = json.loads((folder / "test_metrics.json").read_text())
    potential, params, _ = load_model(folder / "best.npz")
    tmap = TypeMap(potential.config.species)
    graphs = [frame_graph(f, tmap, potential.config.r_max) for f in test_frames]
    metrics = error_metrics(graphs, predict_frames(potential, params, graphs), tmap)
    for key in ("energy_per_atom_mae_meV", "forces_mae_meV_per_A", "forces_rmse_meV_per_A"):
        assert metrics[key] == pytest.approx(recorded[key], rel=1e-3), key


@pytest.mark.slow
def test_demo_runs_on_the_shipped_defaults(tmp_path):
    # the default time-to-failure part (4 replicas, up to 150 steps) alone takes minutes: fewer here
    proc = subprocess.run([sys.executable, "-m", "legato_jax.cli.main", "demo", "--out", str(tmp_path),
                           "--ttf-replicas", "2", "--ttf-max-steps", "20"],
                          cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "frames                1500" in proc.stdout
    assert proc.stdout.count("on the test split") == 2
    assert (tmp_path / "data_summary.png").exists() and (tmp_path / "parity_legato.png").exists()
    assert proc.stdout.count("stage 1 nve") == 2 and (tmp_path / "md_thermo.png").exists()
    assert (tmp_path / "md_allegro.csv").exists() and (tmp_path / "md_legato.csv").exists()
    assert "beta of t_failure" in proc.stdout and "legato vs allegro" in proc.stdout
    ttf = json.loads((tmp_path / "ttf.json").read_text())
    assert set(ttf["models"]) == {"allegro", "legato"} and set(ttf["models"]["legato"]["sizes"]) == {"512", "1024"}
    assert (tmp_path / "ttf.png").exists()
