"""A non-editable install works outside the checkout: the wheel carries the MD presets, the
equilibrated ammonia cell, the shipped dataset, models and configs, and `legato md`, `legato train`
and `legato demo` run from it in a folder that is not the checkout."""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "data" / "ammonia-tiny.npz"
PACKAGE_DATA = ("legato_jax/md/presets/demo.yaml", "legato_jax/md/presets/paper-code.yaml",
                "legato_jax/md/presets/paper-text.yaml", "legato_jax/md/presets/stressed.yaml",
                "legato_jax/data/structures/ammonia_64.extxyz",
                "legato_jax/shipped/data/ammonia.extxyz.xz", "legato_jax/shipped/data/ammonia.split.json",
                "legato_jax/shipped/data/ammonia_pimd.extxyz.xz", "legato_jax/shipped/data/ammonia_pimd_r2.split.json",
                "legato_jax/shipped/models/legato/best.npz", "legato_jax/shipped/models/allegro/best.npz",
                "legato_jax/shipped/configs/train/legato.yaml", "legato_jax/shipped/configs/model/allegro-tiny.yaml")


def run(cmd, cwd, env=None, timeout=300):
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


@pytest.mark.slow
def test_wheel_installs_and_runs_md_outside_the_checkout(tmp_path):
    # Build from a copy of what the wheel is made of, so the build leaves nothing in the checkout.
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for name in ("data", "models", "configs"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("*.extxyz", "*.parts"))
    shutil.copytree(ROOT / "legato_jax", src / "legato_jax",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    wheels = tmp_path / "wheels"
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", wheels, "."], src)
    (wheel,) = wheels.glob("legato_jax-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = [p for p in PACKAGE_DATA if p not in names]
    assert not missing, f"package data missing from the wheel: {missing}"
    packages = [p.parent.relative_to(ROOT).as_posix() + "/__init__.py" for p in (ROOT / "legato_jax").rglob("__init__.py")]
    assert not [p for p in packages if p not in names], "every subpackage ships (pyproject's packages list)"
    assert not [n for n in names if n.endswith("checkpoint.msgpack")], "training checkpoints do not ship"

    # A scratch venv with the wheel; the project's dependencies come from this interpreter's
    # site-packages as a plain path in a .pth file: the path is added to sys.path, but the .pth
    # files inside it (the editable install's hook) are not executed.
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", venv], tmp_path)
    python = venv / "bin" / "python"
    run([sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", "--no-index", wheel], tmp_path)
    site = Path(run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path).strip())
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "outer-site-packages.pth").write_text("\n".join(sorted(deps)) + "\n")

    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    where = run([python, "-c", "import legato_jax; print(legato_jax.__file__)"], work, env).strip()
    assert Path(where).resolve().is_relative_to(venv.resolve()), f"legato_jax imported from {where}, not the scratch venv"

    legato = venv / "bin" / "legato"
    out = run([legato, "md", "--model", TINY, "--ammonia", "16", "--preset", "paper-code",
               "--steps", "20", "--json", "--no-progress"], work, env)
    summary = json.loads(out[out.index("{"):])
    assert summary["steps"] == 20 and summary["n_atoms"] == 64, summary
    # the shipped model (the default) and preset
    out = run([legato, "md", "--preset", "demo", "--ammonia", "16", "--steps", "10", "--json", "--no-progress"], work, env)
    summary = json.loads(out[out.index("{"):])
    assert summary["steps"] == 10 and summary["model"] == "legato", summary

    # a training config in its own folder: its model YAML beside it, the shipped dataset and split
    (work / "cfg").mkdir()
    shutil.copy(ROOT / "configs" / "model" / "allegro-tiny.yaml", work / "cfg" / "tiny-model.yaml")
    (work / "cfg" / "tiny.yaml").write_text(
        "name: tiny\nout_dir: runs\nmodel: tiny-model.yaml\ndata: data/ammonia.extxyz.xz\n"
        "split: data/ammonia.split.json\nmax_train_frames: 8\nmax_epochs: 1\nstress_weight: 0.0\n")
    run([legato, "train", "cfg/tiny.yaml"], work, env, timeout=600)
    saved = (work / "runs" / "tiny" / "config.yaml").read_text()
    assert "data: data/ammonia.extxyz.xz" in saved and (work / "runs" / "tiny" / "best.npz").exists()
    assert "usage: legato demo" in run([legato, "demo", "--help"], work, env)
