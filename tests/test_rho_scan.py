"""`legato rho-scan` end to end on tiny settings: two SAM radii trained, measured and run to
failure, one table, one plot; a second call reuses the trained runs."""

import csv
import json
from pathlib import Path

import pytest
import yaml

from legato_jax.cli.main import main

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"


@pytest.fixture
def train_yaml(tmp_path):
    cfg = {"name": "x", "data": str(DATA / "ammonia-small.extxyz"), "split": str(DATA / "ammonia-small.split.json"),
           "model": str(ROOT / "configs" / "model" / "allegro-tiny.yaml"), "batch_size": 4, "eval_batch_size": 4,
           "lr": 0.005, "max_epochs": 1}
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def scan(argv, monkeypatch=None):
    return main(["rho-scan", *map(str, argv)])


@pytest.mark.slow
def test_rho_scan_end_to_end_on_tiny_settings(train_yaml, tmp_path, monkeypatch, capsys):
    out = tmp_path / "scan"
    argv = ["--config", train_yaml, "--rhos", "0", "0.01", "--out", out, "--sharpness-frames", "4",
            "--sharpness-draws", "3", "--sizes", "64", "128", "--replicas", "2", "--preset", "stressed",
            "--max-steps", "40", "--chunk", "20"]
    assert scan(argv, monkeypatch) == 0
    printed = capsys.readouterr()
    assert "noise sharp." in printed.out and "training into" in printed.err
    rows = list(csv.DictReader(open(out / "rho_scan.csv")))
    assert [float(r["rho"]) for r in rows] == [0.0, 0.01]
    for r in rows:
        assert float(r["test_f_mae"]) > 0 and float(r["noise_sharpness"]) == float(r["noise_sharpness"])
        assert 0 < float(r["ttf_temperature_median_ps"]) <= 40 * 2.5 / 1000
    result = json.loads((out / "rho_scan.json").read_text())
    assert set(result["ttf"]["models"]) == {"rho_0", "rho_0.01"}
    assert (out / "rho_scan.png").stat().st_size > 10_000
    assert (out / "rho_0.01" / "best.npz").exists()

    stored = out / "rho_0" / "measured.json"
    assert json.loads(stored.read_text())["measured"]["noise_sharpness"] == pytest.approx(float(rows[0]["noise_sharpness"]))
    marked = json.loads(stored.read_text())
    marked["measured"]["noise_sharpness"] = 123.0
    stored.write_text(json.dumps(marked))
    assert scan(argv, monkeypatch) == 0  # the trained runs and their measurements are reused
    assert "reusing" in capsys.readouterr().err
    assert float(next(csv.DictReader(open(out / "rho_scan.csv")))["noise_sharpness"]) == 123.0


def test_rho_scan_refuses_repeated_rhos(train_yaml, tmp_path, monkeypatch, capsys):
    assert scan(["--config", train_yaml, "--rhos", "0.01", "0.01", "--out", tmp_path, "--sizes", "64"], monkeypatch) == 2
    assert "distinct" in capsys.readouterr().err
    assert scan(["--config", train_yaml, "--rhos", "0.01", "--out", tmp_path]) == 2  # sizes needed unless --train-only
    assert "--sizes" in capsys.readouterr().err


def test_an_interrupted_rho_continues_from_its_checkpoint(train_yaml, tmp_path, capsys):
    """A run cut short (its best.npz already written) is continued to its budget, not reused as if ended."""
    from legato_jax.train.config import load_train_config
    from legato_jax.train.trainer import Trainer

    out = tmp_path / "scan"
    cfg = load_train_config(str(train_yaml), ["max_epochs=2", "rho=0.01", "name=rho_0.01", f"out_dir={out}"])
    Trainer(cfg, progress=False).fit(epochs=1)  # the interruption: one of two epochs done
    assert (out / "rho_0.01" / "best.npz").exists() and not (out / "rho_0.01" / "trained.json").exists()

    argv = ["--config", train_yaml, "--set", "max_epochs=2", "--rhos", "0.01", "--out", out, "--train-only"]
    assert scan(argv) == 0
    assert "continuing" in capsys.readouterr().err
    assert json.loads((out / "rho_0.01" / "trained.json").read_text())["epochs"] == 2
    assert sum(1 for _ in open(out / "rho_0.01" / "metrics.csv")) == 3  # header + two epochs, none repeated

    assert scan(argv) == 0
    assert "reusing" in capsys.readouterr().err
