"""MPI checks, launched with the venv's mpirun (the `mpich` wheel) from inside pytest."""

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


def run_mpi(script: Path, n: int = 2, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, MPICH_INTERFACE_HOSTNAME="localhost", OMP_NUM_THREADS="1")
    env.pop("XLA_FLAGS", None)
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
