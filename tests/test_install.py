"""A non-editable install works outside the checkout: the wheel carries the MD presets and the
equilibrated ammonia cell, and `legato md` runs from it in a folder that is not the checkout."""

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
                "legato_jax/data/structures/ammonia_64.extxyz")


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
    shutil.copytree(ROOT / "legato_jax", src / "legato_jax",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    wheels = tmp_path / "wheels"
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", wheels, "."], src)
    (wheel,) = wheels.glob("legato_jax-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = [p for p in PACKAGE_DATA if p not in names]
    assert not missing, f"package data missing from the wheel: {missing}"

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

    out = run([venv / "bin" / "legato", "md", "--model", TINY, "--ammonia", "16", "--preset", "paper-code",
               "--steps", "20", "--json", "--no-progress"], work, env)
    summary = json.loads(out[out.index("{"):])
    assert summary["steps"] == 20 and summary["n_atoms"] == 64, summary
