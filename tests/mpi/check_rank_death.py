"""Run under `mpirun -n 2 ... hang|kill`: rank 1 stops taking part (hangs, or is killed) while rank 0
runs decomposed MD. The job must end with an error instead of waiting forever: the watchdog
aborts a hang, mpirun ends a job whose rank was killed."""

import os

os.environ.setdefault("MPI4JAX_NO_WARN_JAX_VERSION", "1")

import signal
import sys
import time
from pathlib import Path

from ase.io import read
from mpi4py import MPI

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from legato_jax.md.integrate import Stage  # noqa: E402
from legato_jax.md.run import MDConfig  # noqa: E402
from legato_jax.data.ammonia import AMMONIA_CELL  # noqa: E402
from legato_jax.model.io import load_model  # noqa: E402
from legato_jax.parallel.run import run_md_decomposed  # noqa: E402

comm = MPI.COMM_WORLD
mode = sys.argv[1]
if comm.Get_rank() == 1:
    if mode == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(3600)
pot, params, _ = load_model(ROOT / "tests" / "data" / "ammonia-tiny.npz")
cfg = MDConfig((Stage("nve", 20, 1.0),), 200.0, chunk_steps=20)
run_md_decomposed(pot, params, read(AMMONIA_CELL).repeat((2, 2, 2)), cfg, (2, 1, 1), comm=comm, rank_timeout_s=15)
print("rank 0 finished without rank 1", flush=True)
