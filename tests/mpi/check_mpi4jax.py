"""Run under `mpirun -n 2`: mpi4jax allreduce and a differentiable ring exchange across ranks.

Each rank owns x_r; the energy sum_r x_r * x_{r-1} needs the neighbour's value (a one-atom
"halo"); its gradient on rank r must be x_{r-1} + x_{r+1}, which only comes out right when the
transpose of the exchange returns the ghost contribution to its owner.
"""

import os

os.environ.setdefault("MPI4JAX_NO_WARN_JAX_VERSION", "1")

import jax
import jax.numpy as jnp
import mpi4jax
import numpy as np
from mpi4py import MPI

comm = MPI.COMM_WORLD.Clone()
rank, size = comm.Get_rank(), comm.Get_size()
assert size >= 2, "run with mpirun -n 2 or more"

total = mpi4jax.allreduce(jnp.float32(rank + 1), op=MPI.SUM, comm=comm)
assert float(total) == size * (size + 1) / 2, total


def energy(x):
    ghost = mpi4jax.sendrecv(x, x, source=(rank - 1) % size, dest=(rank + 1) % size, comm=comm)
    local = x * ghost
    return mpi4jax.allreduce(local, op=MPI.SUM, comm=comm)


x = jnp.float32(rank + 2.0)
g = jax.jit(jax.grad(energy))(x)
values = np.arange(size) + 2.0
expected = values[(rank - 1) % size] + values[(rank + 1) % size]
assert np.isclose(float(g), expected), (rank, float(g), expected)
print(f"rank {rank}/{size}: ok")
