"""Reliability as a careful user probes it: every bad input is one line on stderr naming the culprit
with exit status 2 (3 when MD stops itself), never a traceback; faults lose and duplicate nothing."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from ase.io import read, write

from legato_jax.cli.main import main as cli
from legato_jax.data.ammonia import AMMONIA_CELL
from tests.conftest import labelled, random_cell_atoms

ROOT = Path(__file__).parents[1]
TINY = Path(__file__).parent / "data" / "ammonia-tiny.npz"
SHIPPED = ROOT / "models" / "allegro"


@pytest.fixture(scope="module")
def bad(tmp_path_factory):
    """A folder of broken inputs: every case below names its files relative to it."""
    d = tmp_path_factory.mktemp("bad")
    (d / "afile").write_text("not a folder\n")
    write(d / "cell.extxyz", read(AMMONIA_CELL))
    rng = np.random.default_rng(7)
    frames = [labelled(random_cell_atoms(rng, n=12, min_len=5.0, max_len=7.0)) for _ in range(12)]
    write(d / "toy.extxyz", frames, format="extxyz")
    text = (d / "toy.extxyz").read_text()
    (d / "cut.extxyz").write_text(text[: len(text) - 3])
    (d / "empty.extxyz").write_text("")
    (d / "garbage.extxyz").write_text("this is\nnot a trajectory\n")
    raw = TINY.read_bytes()
    (d / "truncated.npz").write_bytes(raw[: len(raw) // 2])
    (d / "text.npz").write_text("hello\n")
    np.savez(d / "foreign.npz", weights=np.zeros(3))
    (d / "split-notjson.json").write_text("{train: [0, 1")
    (d / "split-list.json").write_text("[0, 1, 2]")
    (d / "split-range.json").write_text(json.dumps({"train": [0, 99], "validation": [1], "test": [2]}))
    (d / "split-float.json").write_text(json.dumps({"train": [0.5, 1], "validation": [2], "test": [3]}))
    (d / "split-missing.json").write_text(json.dumps({"train": [0, 1]}))
    (d / "split-ok.json").write_text(json.dumps({"train": list(range(8)), "validation": [8, 9], "test": [10, 11]}))
    base = {"name": "r", "out_dir": str(d / "runs"), "data": str(d / "toy.extxyz"), "split": str(d / "split-ok.json"),
            "model": str(ROOT / "configs" / "model" / "allegro-tiny.yaml"), "max_epochs": 1}

    def config(name, **changes):
        import yaml

        (d / name).write_text(yaml.safe_dump({**base, **changes}))

    config("ok.yaml")
    config("batch-float.yaml", batch_size=4.5)
    config("lr-text.yaml", lr="fast")
    config("frames-negative.yaml", max_train_frames=-3)
    config("unknown-key.yaml", batch_sizes=4)
    config("model-missing.yaml", model=str(d / "nope.yaml"))
    config("epochs-bool.yaml", max_epochs=True)
    config("split-bad.yaml", split=str(d / "split-range.json"))
    config("model-layers-float.yaml", model={"species": ["H", "N"], "r_max": 4.0, "num_layers": 2.0})
    (d / "list.yaml").write_text("- just\n- a list\n")
    (d / "broken.yaml").write_text("name: [unclosed\n")
    run = d / "corrupt-run"
    run.mkdir()
    for f in ("config.yaml", "stats.json", "metrics.csv"):
        shutil.copy(SHIPPED / f, run / f)
    (run / "checkpoint.msgpack").write_bytes(b"\x00\x01garbage")
    (d / "model-folder").mkdir()
    return d


MD = "md --ensemble nve --temperature 100 --dt 1 --steps 10 --no-progress"

# (argv with {md} for a valid single-stage MD command line, {d} for the folder of broken inputs, {tiny} for the tiny model, text the line must name)
CASES = [
    # usage errors (argparse)
    ("frobnicate", "invalid choice: 'frobnicate'"),
    ("md --structure {d}/cell.extxyz --ammonia 16", "not allowed with argument --structure"),
    ("md --model {tiny} --ammonia 16 --ensemble foo", "--ensemble: invalid choice"),
    ("{md} --model {tiny} --ammonia sixteen", "--ammonia: must be an integer"),
    ("data split --fractions 0.8 0.1 {d}/toy.extxyz", "--fractions"),
    ("train --set", "--set"),
    # data: bad files
    ("data inspect {d}/nope.extxyz", "nope.extxyz: no such file"),
    ("data inspect {d}", "is a directory"),
    ("data inspect {d}/empty.extxyz", "empty.extxyz: file is empty"),
    ("data inspect {d}/cut.extxyz", "cut.extxyz: ends inside a line"),
    ("data inspect {d}/garbage.extxyz", "garbage.extxyz"),
    ("data inspect {d}/toy.extxyz --energy-key E", "E"),
    ("data inspect {d}/toy.extxyz --species H", "species"),
    ("data inspect {d}/toy.extxyz --r-max 0", "--r-max"),
    ("data inspect {d}/toy.extxyz --min-distance 3", "minimum distance"),
    ("data split {d}/toy.extxyz --fractions 0.5 0.5 0.5", "fractions"),
    ("data split {d}/toy.extxyz --block 0", "--block"),
    ("data split {d}/toy.extxyz --output {d}/afile/split.json", "afile"),
    ("data split {d}/toy.extxyz --output {d}", "is a folder"),
    ("data generate-ammonia --workers 0", "--workers"),
    ("data generate-ammonia --n-molecules 0", "--n-molecules"),
    ("data generate-ammonia --stride 0", "stride"),
    ("data generate-ammonia --frames-per-temperature 0", "--frames-per-temperature"),
    ("data generate-ammonia --temperatures -5", "temperature"),
    ("data generate-ammonia --max-new-frames 0", "--max-new-frames"),
    ("data generate-ammonia --output {d}/afile/out.extxyz", "afile"),
    # train: configs, overrides, splits, checkpoints
    ("train {d}/nope.yaml", "nope.yaml"),
    ("train {d}/list.yaml", "list.yaml"),
    ("train {d}/broken.yaml", "broken.yaml"),
    ("train {d}/batch-float.yaml", "batch_size"),
    ("train {d}/lr-text.yaml", "lr"),
    ("train {d}/frames-negative.yaml", "max_train_frames"),
    ("train {d}/unknown-key.yaml", "batch_sizes"),
    ("train {d}/model-missing.yaml", "nope.yaml"),
    ("train {d}/epochs-bool.yaml", "max_epochs"),
    ("train {d}/model-layers-float.yaml", "num_layers"),
    ("train {d}/split-bad.yaml", "split-range.json"),
    ("train {d}/ok.yaml --set batch_size", "batch_size"),
    ("train {d}/ok.yaml --set =3", "--set"),
    ("train {d}/ok.yaml --set batch_size=[", "batch_size"),
    ("train {d}/ok.yaml --set lr=-1", "lr"),
    ("train {d}/ok.yaml --set out_dir={d}/afile", "afile"),
    ("train {d}/ok.yaml --init-from {d}/truncated.npz", "truncated.npz"),
    ("train --resume {d}/corrupt-run", "checkpoint.msgpack"),
    ("train --resume {d}/nope-run", "nope-run"),
    ("train", "CONFIG"),
    # models: truncated, foreign, wrong kind of file
    ("model info {d}/truncated.npz", "truncated.npz"),
    ("model info {d}/text.npz", "text.npz"),
    ("model info {d}/foreign.npz", "foreign.npz"),
    ("model info {d}/nope.npz", "nope.npz"),
    ("model info {d}/model-folder", "model-folder"),
    ("evaluate --model {d}/foreign.npz --data {d}/toy.extxyz", "foreign.npz"),
    ("evaluate --model {tiny} --data {d}/toy.extxyz --batch-size 0", "--batch-size"),
    ("evaluate --model {tiny} --data {d}/toy.extxyz --split {d}/split-notjson.json", "split-notjson.json"),
    ("evaluate --model {tiny} --data {d}/toy.extxyz --split {d}/split-list.json", "split-list.json"),
    ("evaluate --model {tiny} --data {d}/toy.extxyz --split {d}/split-range.json", "split-range.json"),
    ("evaluate --model {tiny} --data {d}/toy.extxyz --split {d}/split-float.json", "split-float.json"),
    ("evaluate --model {tiny} --data {d}/toy.extxyz --split {d}/split-missing.json", "split-missing.json"),
    ("evaluate --model {tiny} --data {d}/toy.extxyz --plot {d}/afile/parity.png", "afile"),
    ("sharpness --model {tiny} --data {d}/toy.extxyz --std -1", "--std"),
    ("sharpness --model {tiny} --data {d}/toy.extxyz --draws 0", "--draws"),
    ("sharpness --model {tiny} --data {d}/toy.extxyz --max-frames 0", "--max-frames"),
    ("sharpness --model {tiny} --data {d}/toy.extxyz --rho -0.1", "--rho"),
    # md: sizes, intervals, outputs, models
    ("{md} --model {d}/truncated.npz --ammonia 16", "truncated.npz"),
    ("{md} --model {d}/nope.npz --ammonia 16", "nope.npz"),
    ("{md} --model {tiny} --structure {d}/nope.extxyz", "nope.extxyz"),
    ("{md} --model {tiny} --structure {d}/cut.extxyz", "cut.extxyz"),
    ("{md} --model {tiny} --ammonia 16 --steps 0", "--steps"),
    ("{md} --model {tiny} --ammonia 16 --log-every 0", "--log-every"),
    ("{md} --model {tiny} --ammonia 16 --chunk 0", "--chunk"),
    ("{md} --model {tiny} --ammonia 16 --skin -1", "skin"),
    ("{md} --model {tiny} --ammonia 16 --dt 0", "dt"),
    ("{md} --model {tiny} --ammonia 16 --temperature -5", "temperature"),
    ("{md} --model {tiny} --ammonia 16 --hydrogen-mass 0", "hydrogen"),
    ("{md} --model {tiny} --ammonia 0", "--ammonia"),
    ("{md} --model {tiny} --ammonia 16 --density -1", "density"),
    ("{md} --model {tiny} --ammonia 16 --replicate 0 1 1", "--replicate"),
    ("{md} --model {tiny} --ammonia 16 --preset paper-code", "not both"),
    ("md --model {tiny} --ammonia 16 --preset nope", "nope"),
    ("{md} --model {tiny} --structure {d}/cell.extxyz --frame 99", "--frame 99"),
    ("{md} --model {tiny} --ammonia 16 --out {d}/afile/traj.extxyz", "afile"),
    ("{md} --model {tiny} --ammonia 16 --log {d}/afile/thermo.csv", "afile"),
    ("{md} --model {tiny} --ammonia 16 --out {d}", "is a folder"),
    ("{md} --model {tiny} --ammonia 16 --domains 0 1 1", "--domains"),
    # ttf
    ("ttf --models {tiny} --sizes 64 --chunk 0", "--chunk"),
    ("ttf --models {tiny} --sizes 64 --every 0", "--every"),
    ("ttf --models {tiny} --sizes 64 --every 10 --chunk 5", "--chunk"),
    ("ttf --models {tiny} --sizes 64 --replicas 0", "--replicas"),
    ("ttf --models {tiny} --sizes 0", "--sizes"),
    ("ttf --models {tiny} --sizes 64 --t-window 300 100", "temperature window"),
    ("ttf --models {d}/foreign.npz --sizes 64", "foreign.npz"),
    ("ttf --models {tiny} --sizes 64 --json {d}/afile/ttf.json", "afile"),
    ("ttf --models {tiny} --sizes 64 --plot {d}/afile/ttf.png", "afile"),
    # bench
    ("bench inference --sizes 0", "--sizes"),
    ("bench inference --repeats 0", "--repeats"),
    ("bench inference --json {d}/afile/b.json", "afile"),
    ("bench train --batch-sizes 0", "--batch-sizes"),
    ("bench train --frames 0", "--frames"),
    ("bench md --sizes -1", "--sizes"),
    ("bench md --steps 0", "--steps"),
    ("bench scaling --domains 0", "--domains"),
    ("bench scaling --atoms-per-domain 0", "--atoms-per-domain"),
    ("demo --out {d}/afile/demo", "afile"),
]


@pytest.mark.parametrize("argv, culprit", CASES, ids=[c[0].replace("{d}/", "").replace("{tiny}", "tiny").replace("{md}", "md") for c in CASES])
def test_bad_input_is_one_line_naming_the_culprit(bad, capsys, argv, culprit):
    args = [a.format(d=bad, tiny=TINY) for a in argv.format(md=MD, d="{d}", tiny="{tiny}").split()]
    rc = cli(args)
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert rc == 2, (rc, err)
    assert len(lines) == 1 and lines[0].startswith("legato"), err
    assert "Traceback" not in err + out
    assert culprit.format(d=bad) in lines[0], lines[0]


def test_reliability_covers_sixty_cases():
    assert len(CASES) >= 60


def run_cli(*args, timeout=600, **kw):
    return subprocess.run([sys.executable, "-m", "legato_jax.cli.main", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT, **kw)


def test_a_fresh_process_reports_bad_input_in_one_line(bad):
    for args, culprit in [(["model", "info", bad / "truncated.npz"], "truncated.npz"),
                          (["md", "--model", TINY, "--ammonia", "16", "--chunk", "0"], "--chunk"),
                          (["data", "inspect", bad / "cut.extxyz"], "cut.extxyz")]:
        proc = run_cli(*args)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and culprit in proc.stderr, proc.stderr


def test_md_that_blows_up_stops_with_status_3_and_logs_end_at_the_last_good_frame(tmp_path, capsys):
    log, out = tmp_path / "thermo.csv", tmp_path / "traj.extxyz"
    rc = cli(["md", "--model", str(TINY), "--ammonia", "16", "--ensemble", "nve", "--temperature", "300",
              "--dt", "20", "--steps", "400", "--log-every", "10", "--chunk", "50", "--log", str(log), "--out", str(out),
              "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 3 and err.count("\n") == 1 and err.startswith("legato md: stopped: step "), err
    rows = log.read_text().splitlines()[1:]
    frames = read(out, ":") if out.stat().st_size else []
    assert len(frames) == len(rows)
    stop_step = int(err.split("step ")[1].split(" ")[0])
    logged = [int(r.split(",")[0]) for r in rows]
    assert all(s < stop_step for s in logged)
    assert all(np.isfinite(f.positions).all() for f in frames)


def test_close_contact_warns_in_one_line_and_stops_below_the_threshold(tmp_path, capsys):
    def structure(distance):
        atoms = read(AMMONIA_CELL)
        a, b = [i for i, z in enumerate(atoms.numbers) if z == 7][:2]
        v = atoms.positions[b] - atoms.positions[a]
        atoms.positions[b] = atoms.positions[a] + distance * v / np.linalg.norm(v)
        path = tmp_path / f"close-{distance}.extxyz"
        write(path, atoms)
        return str(path)

    common = ["md", "--model", str(TINY), "--ensemble", "nve", "--temperature", "10", "--dt", "0.25", "--steps", "10",
              "--log-every", "5", "--no-progress"]
    # N-N covalent radius sum 1.42 Å: 0.95 Å is 0.67 x (warn below 0.7), 0.65 Å is 0.46 x (stop below 0.5)
    rc = cli(common + ["--structure", structure(0.95), "--health", "warn"])
    lines = capsys.readouterr().err.splitlines()
    assert rc == 0 and all(line.startswith("legato md: warning: step ") for line in lines), lines
    assert "step 5 " in lines[0] and "0.67 x their covalent radius sum" in lines[0]
    assert sum("covalent radius" in line for line in lines) == 1  # each quantity warns once
    rc = cli(common + ["--structure", structure(0.95), "--health", "off"])
    assert rc == 0 and capsys.readouterr().err == ""
    rc = cli(common + ["--structure", structure(0.65)])
    err = capsys.readouterr().err
    assert rc == 3 and err.count("\n") == 1 and "stopped: step 5 " in err and "covalent radius sum" in err, err


def test_killed_parallel_generation_reruns_to_exactly_the_uninterrupted_frames(tmp_path):
    small = ["--n-molecules", "4", "--temperatures", "200", "300", "--frames-per-temperature", "3", "--stride", "2",
             "--thermalize-steps", "6", "--workers", "2"]
    whole, killed = tmp_path / "whole.extxyz", tmp_path / "killed.extxyz"
    proc = run_cli("data", "generate-ammonia", *small, "--output", whole)
    assert proc.returncode == 0, proc.stderr
    parts = Path(str(killed) + ".parts")
    cmd = [sys.executable, "-m", "legato_jax.cli.main", "data", "generate-ammonia", *small, "--output", str(killed)]
    job = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and not any(parts.glob("segment*.extxyz")):
        time.sleep(0.2)
    while time.time() < deadline and not any(p.stat().st_size for p in parts.glob("segment*.extxyz")):
        time.sleep(0.2)
    assert job.poll() is None, "the run ended before it could be killed"
    job.send_signal(signal.SIGKILL)  # the parent only: its workers must die with it, not write on
    job.wait()
    time.sleep(2)
    assert not [p for p in Path("/proc").glob("[0-9]*") if _runs_with(p, str(killed))], "orphaned workers"
    proc = run_cli("data", "generate-ammonia", *small, "--output", killed)
    assert proc.returncode == 0, proc.stderr
    a, b = read(whole, ":"), read(killed, ":")
    assert len(a) == len(b) == 6
    for x, y in zip(a, b):
        # a resumed segment restarts from its checkpoint: equal to the precision frames are written with
        assert x.info["config_type"] == y.info["config_type"]
        np.testing.assert_allclose(x.positions, y.positions, atol=1e-6)
        np.testing.assert_allclose(x.get_potential_energy(), y.get_potential_energy(), rtol=1e-7)


def _runs_with(proc: Path, text: str) -> bool:
    try:
        return text in (proc / "cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False


def test_a_live_writer_holds_its_segment(tmp_path):
    from legato_jax.data.generate import segment_lock
    from legato_jax.errors import ConfigError

    parts = tmp_path / "x.parts"
    parts.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from legato_jax.data.generate import segment_lock\n"
        "with segment_lock(Path(sys.argv[1]), 0):\n    print('held', flush=True); time.sleep(60)"), str(parts)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ConfigError, match=f"being written by another live process \\(pid {holder.pid}\\)"):
            with segment_lock(parts, 0):
                pass
    finally:
        holder.kill()
        holder.wait()
    with segment_lock(parts, 0):
        pass


def test_metrics_are_rewritten_atomically(tmp_path, monkeypatch):
    from legato_jax import outputs

    target = tmp_path / "metrics.csv"
    target.write_text("epoch,loss\n1,0.5\n")

    def crash(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        outputs.atomic_write_text(target, "epoch,loss\n")
    assert target.read_text() == "epoch,loss\n1,0.5\n"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.csv"]


@pytest.mark.parametrize("at", ["fsync", "replace"])
def test_a_kill_during_the_metrics_rewrite_leaves_the_old_file_whole(tmp_path, at):
    # a real SIGKILL of the process resuming a run, mid-write (at fsync) and just before the rename
    target = tmp_path / "metrics.csv"
    old = "epoch,loss\r\n1,0.5\r\n2,0.4\r\n3,0.3\r\n"
    target.write_text(old, newline="")
    code = (f"import os, signal\nfrom legato_jax.train.trainer import truncate_metrics\n"
            f"os.{at} = lambda *a: os.kill(os.getpid(), signal.SIGKILL)\n"
            f"truncate_metrics({str(target)!r}, 2)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL
    assert target.read_bytes().decode() == old
    from legato_jax.train.trainer import truncate_metrics

    truncate_metrics(target, 2)  # the next resume rewrites it over the leftover temporary file
    assert target.read_bytes().decode() == "epoch,loss\r\n1,0.5\r\n2,0.4\r\n"
