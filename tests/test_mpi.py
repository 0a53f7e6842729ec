"""MPI checks, launched with the venv's mpirun (the `mpich` wheel) from inside pytest."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.mpi
HERE = Path(__file__).parent


def mpirun() -> str:
    exe = Path(sys.executable).parent / "mpirun"
    found = str(exe) if exe.exists() else shutil.which("mpirun")
    if found is None:
        pytest.fail("mpirun not found: install the [mpi] extra (make test does)")
    return found


def mpi_env() -> dict:
    """The ranks' environment: loopback, one thread, and MPICH's progress throttle, so that a rank
    waiting in a collective sleeps instead of spinning on a core that the other rank (and the other
    test worker) needs."""
    env = dict(os.environ, MPICH_INTERFACE_HOSTNAME="localhost", OMP_NUM_THREADS="1",
               MPIR_CVAR_CH4_PROGRESS_THROTTLE="1", MPIR_CVAR_CH4_PROGRESS_THROTTLE_NO_PROGRESS_COUNT="64")
    env.pop("XLA_FLAGS", None)
    return env


def run_mpi(script: Path, n: int = 2, timeout: float = 900) -> subprocess.CompletedProcess:
    env = mpi_env()
    return subprocess.run(
        [mpirun(), "-n", str(n), sys.executable, str(script)],
        capture_output=True, text=True, timeout=timeout, env=env,
    )


def test_mpi4jax_allreduce_and_differentiable_exchange():
    proc = run_mpi(HERE / "mpi" / "check_mpi4jax.py")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count(": ok") == 2


def test_domain_decomposition_through_mpi4jax_equals_the_single_domain():
    proc = run_mpi(HERE / "mpi" / "check_domains.py")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count(": ok") == 2


def run_cli(args: list[str], n: int = 2, timeout: float = 600) -> subprocess.CompletedProcess:
    env = mpi_env()
    return subprocess.run([mpirun(), "-n", str(n), sys.executable, "-m", "legato_jax.cli.main", *args],
                          capture_output=True, text=True, timeout=timeout, env=env, cwd=HERE.parent)


MD_ARGS = ["md", "--model", "tests/data/ammonia-tiny.npz", "--ammonia", "128", "--ensemble", "nose-hoover",
           "--temperature", "200", "--dt", "1", "--steps", "20", "--no-progress"]


def test_legato_md_runs_one_domain_per_rank_under_mpirun():
    proc = run_cli(MD_ARGS + ["--domains", "2", "1", "1", "--json"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.loads(proc.stdout[proc.stdout.index("{"):])  # printed once, by rank 0
    assert summary["domains"] == "2x1x1" and summary["backend"] == "mpi" and summary["n_atoms"] == 512
    assert summary["stages"][0]["temperature_K"] > 0


def test_a_grid_that_does_not_match_the_ranks_is_one_line_and_ends_the_job():
    proc = run_cli(MD_ARGS + ["--domains", "2", "2", "1"])
    assert proc.returncode != 0
    lines = [x for x in proc.stderr.splitlines() if x.startswith("legato md: error")]
    assert lines and "makes 4 domains but mpirun started 2 ranks" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("mode", ["hang", "kill"])
def test_a_rank_that_hangs_or_dies_ends_the_job_with_an_error(mode):
    proc = subprocess.run([mpirun(), "-n", "2", sys.executable, str(HERE / "mpi" / "check_rank_death.py"), mode],
                          capture_output=True, text=True, timeout=300, env=mpi_env())
    assert proc.returncode != 0 and "finished without rank 1" not in proc.stdout
    if mode == "hang":
        assert "saw no progress for 15 s" in proc.stderr
