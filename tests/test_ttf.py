"""The time-to-failure experiment end to end on tiny settings: every replica's times are consistent
with the protocol, censored replicas carry the limit, and bad input is refused in one line."""

import json

import numpy as np
import pytest

from legato_jax.cli.main import main
from legato_jax.experiments.fidelity import replicas_to_resolve
from legato_jax.experiments.ttf import beta_differences, bootstrap_ci, fit_model, summarize
from tests.test_md_run import TINY


def test_summary_of_failure_times_with_censoring():
    steps = np.array([100, 200, 300, 1000, 1000])
    t = steps * 2.0 / 1000
    s = summarize(steps, t, np.array([True, True, True, False, False]))
    assert s["n_failed"] == 3 and s["censored_fraction"] == pytest.approx(0.4)
    assert s["median_ps"] == pytest.approx(0.6) and s["median_exact"]  # under half censored
    assert s["mean_ps"] == pytest.approx(np.mean(t))
    lo, hi = s["median_ci_ps"]
    assert lo <= s["median_ps"] <= hi
    assert not summarize(steps, t, np.array([True, True, False, False, False]))["median_exact"]
    assert np.isnan(bootstrap_ci(np.array([1.0]), np.mean)[0])


def test_the_model_comparison_reports_its_power_to_resolve_the_papers_difference():
    """Two synthetic models with betas 0.3 and 0.15 (the paper's difference) and scatter 0.3: the
    comparison finds the difference and states the replicas that 80 % power needs for it."""
    rng = np.random.default_rng(1)
    sizes, replicas, limit_ps, models = (64, 256, 1024), 40, 100.0, {}
    for name, beta in (("a", 0.3), ("b", 0.15)):
        per_size = {}
        for n in sizes:
            t = np.minimum(np.exp(1.0 - beta * np.log(n) + 0.3 * rng.standard_normal(replicas)), limit_ps)
            per_size[str(n)] = {"c": summarize(np.round(t * 400), t, t < limit_ps)}
        models[name] = {"sizes": per_size, "beta": fit_model(per_size, ["c"])}
    d = beta_differences(models, ["c"], limit_ps)["b"]["c"]
    assert d["difference"] == pytest.approx(0.15, abs=0.1)
    power = d["power"]
    assert power["difference"] == 0.15 and power["replicas"] == replicas
    assert power["replicas_needed"] == replicas_to_resolve(sizes, *power["sigmas"])
    assert (power["power"] > 0.6) == (replicas >= power["replicas_needed"])


def test_ttf_cli_on_tiny_settings(tmp_path, capsys):
    out, png = tmp_path / "ttf.json", tmp_path / "ttf.png"
    argv = ["ttf", "--models", str(TINY), "--sizes", "64", "128", "--replicas", "3", "--preset", "stressed",
            "--max-steps", "60", "--chunk", "30", "--json", str(out), "--plot", str(png), "--out", str(tmp_path / "parts")]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "beta of t_failure" in printed and png.stat().st_size > 10_000
    result = json.loads(out.read_text())
    assert result["protocol"]["max_steps"] == 60 and result["protocol"]["replicas"] == 3
    limit_ps = sum(s["steps"] * s["dt_fs"] for s in result["protocol"]["stages"]) / 1000
    model = result["models"]["ammonia-tiny"]
    for size in ("64", "128"):
        for criterion, s in model["sizes"][size].items():
            steps, failed, t = np.array(s["steps"]), np.array(s["failed"]), np.array(s["time_ps"])
            assert len(steps) == 3
            assert np.all(steps[~failed] == 60), criterion  # censored at the limit, never dropped
            assert np.all((steps[failed] % 10 == 0) & (steps[failed] > 0) & (steps[failed] <= 60))
            assert np.all(t <= limit_ps + 1e-12)
    for criterion, b in model["beta"].items():
        assert (b["beta"] is None) == ("reason" in b), criterion
    # a second call finds every (model, size) part and runs nothing
    assert main(argv[:-1] + [str(tmp_path / "parts")]) == 0
    err = capsys.readouterr().err
    assert err.count("reusing") == 2 and json.loads(out.read_text())["models"] == result["models"]


@pytest.mark.parametrize("argv, message", [
    (["--sizes", "100"], "multiple of the 64-atom ammonia cell"),
    (["--sizes", "64", "--preset", "nope"], "no such preset"),
    (["--sizes", "64", "--every", "7", "--max-steps", "60", "--preset", "stressed"], "not a multiple of the check interval"),
    (["--sizes", "64", "--t-window", "300", "100"], "temperature window"),
])
def test_bad_ttf_input_is_one_line(argv, message, capsys):
    assert main(["ttf", "--models", str(TINY), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_the_64_atom_cell_runs_with_the_shipped_model(tmp_path, capsys):
    """64 and 128 atoms are narrower than 2 x (r_max 5.5 + skin 0.5): the image-shift list runs them."""
    out = tmp_path / "ttf.json"
    assert main(["ttf", "--models", "models/allegro/best.npz", "--sizes", "64", "128", "--replicas", "2",
                 "--preset", "stressed", "--max-steps", "20", "--json", str(out)]) == 0
    sizes = json.loads(out.read_text())["models"]["allegro"]["sizes"]
    assert set(sizes) == {"64", "128"} and all(len(s["steps"]) == 2 for s in sizes["64"].values())
