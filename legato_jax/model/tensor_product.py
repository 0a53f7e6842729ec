"""Allegro's channel-wise tensor product and channel mixing, channels last.

Features are laid out (edges, irrep components, channels) so that the tensor product is a fused
elementwise kernel over contiguous channels and the channel mixing is one large matmul per irrep.
Coefficients, path order and parameters are e3nn-jax's (`e3nn.tensor_product` with
`regroup_output=False`, `e3nn.flax.Linear`), read off e3nn itself, so models trained with the
e3nn formulation load and give the same numbers.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import e3nn_jax as e3nn
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


class Path(NamedTuple):
    """One output of the tensor product: irrep `ir`, with out[k] = sum c * a[i] * b[j] over `terms`."""

    ir: e3nn.Irrep
    terms: tuple[tuple[tuple[int, int, float], ...], ...]  # per output component: (i, j, c) triples


@functools.lru_cache(maxsize=None)
def tensor_product_paths(args: str, sh: str, outs: str) -> tuple[Path, ...]:
    """The paths of e3nn's tensor product of `args` x `sh` filtered to `outs`, in e3nn's order,
    with their nonzero Clebsch-Gordan coefficients (all irreps of multiplicity 1)."""
    a_ir, b_ir = e3nn.Irreps(args), e3nn.Irreps(sh)
    eye_a = np.eye(a_ir.dim)[:, None, :]
    eye_b = np.eye(b_ir.dim)[None, :, :]
    shape = (a_ir.dim, b_ir.dim)
    a = e3nn.IrrepsArray(a_ir, np.broadcast_to(eye_a, shape + (a_ir.dim,)).astype(np.float64))
    b = e3nn.IrrepsArray(b_ir, np.broadcast_to(eye_b, shape + (b_ir.dim,)).astype(np.float64))
    with jax.ensure_compile_time_eval(), jax.enable_x64(True):
        out = e3nn.tensor_product(a, b, filter_ir_out=list(e3nn.Irreps(outs)), regroup_output=False)
        cg = np.asarray(out.array)  # (dim a, dim b, dim out)
    paths = []
    for (_, ir), sl in zip(out.irreps, out.irreps.slices()):
        terms = []
        for k in range(sl.start, sl.stop):
            i, j = np.nonzero(np.abs(cg[:, :, k]) > 1e-12)
            terms.append(tuple((int(p), int(q), float(cg[p, q, k])) for p, q in zip(i, j)))
        paths.append(Path(ir, tuple(terms)))
    return tuple(paths)


def output_blocks(paths: tuple[Path, ...]) -> tuple[tuple[e3nn.Irrep, tuple[int, ...]], ...]:
    """The paths grouped by output irrep as e3nn's `regroup()` orders them (a stable sort)."""
    order = e3nn.Irreps([(1, p.ir) for p in paths]).sort()
    groups: dict = {}
    for k in order.inv:
        groups.setdefault(paths[k].ir, []).append(k)
    return tuple((ir, tuple(ks)) for ir, ks in groups.items())


def _products(a_rows: list, b_rows: list, paths: tuple[Path, ...]) -> dict:
    def component(terms):
        return sum(c * (a_rows[i] * b_rows[j]) for i, j, c in terms)

    return {
        ir: jnp.stack([jnp.concatenate([component(paths[k].terms[m]) for k in ks], axis=-1) for m in range(ir.dim)],
                      axis=1)
        for ir, ks in output_blocks(paths)
    }


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def channelwise_tensor_product(a: jax.Array, b: jax.Array, paths: tuple[Path, ...]) -> dict:
    """a (E, dim a, C) x b (E, dim b, C), channel by channel -> for each output irrep, its paths
    side by side on the channel axis: {irrep: (E, irrep dim, paths * C)}, index path * C + channel.

    Its gradient is written out (one stacked product per input) rather than left to autodiff,
    whose sum of padded slices XLA evaluates for every slice at every element."""
    return _products(list(jnp.unstack(a, axis=1)), list(jnp.unstack(b, axis=1)), paths)


def _tp_fwd(a, b, paths):
    return channelwise_tensor_product(a, b, paths), (a, b)


def _tp_bwd(paths, res, g):
    a, b = res
    C = a.shape[-1]
    a_rows, b_rows = jnp.unstack(a, axis=1), jnp.unstack(b, axis=1)
    da = [[] for _ in a_rows]
    db = [[] for _ in b_rows]
    for ir, ks in output_blocks(paths):
        for slot, k in enumerate(ks):
            for m, terms in enumerate(paths[k].terms):
                gk = g[ir][:, m, slot * C:(slot + 1) * C]
                for i, j, c in terms:
                    da[i].append(c * (gk * b_rows[j]))
                    db[j].append(c * (gk * a_rows[i]))
    zero = jnp.zeros_like(a_rows[0])
    return (jnp.stack([sum(t) if t else zero for t in da], axis=1),
            jnp.stack([sum(t) if t else zero for t in db], axis=1))


channelwise_tensor_product.defvjp(_tp_fwd, _tp_bwd)


def scalar_order(paths: tuple[Path, ...], channels: int) -> tuple[int, ...]:
    """Where e3nn's flattening of the 0e outputs (channel * n0 + path) puts each entry of our
    0e block (path * channels + channel): the row order that feeds our block to e3nn-ordered weights."""
    scalar_paths = [k for k, p in enumerate(paths) if p.ir == e3nn.Irrep("0e")]
    n0 = len(scalar_paths)
    return tuple(c * n0 + q for q in range(n0) for c in range(channels))


class ChannelLinear(nn.Module):
    """e3nn.flax.Linear(C * outs) applied to the tensor product's paths (C channels each), with
    e3nn's parameters, names and normalization, computed as one matmul per output irrep."""

    outs: e3nn.Irreps
    channels: int

    @nn.compact
    def __call__(self, paths: tuple[Path, ...], blocks: dict) -> jax.Array:
        C = self.channels
        irreps_in = e3nn.Irreps([(C, p.ir) for p in paths]).regroup()
        irreps_out = (C * e3nn.Irreps(self.outs)).simplify().filter(keep=irreps_in)
        lin = e3nn.FunctionalLinear(irreps_in, irreps_out)
        dtype = next(iter(blocks.values())).dtype
        out = {}
        for ins in lin.instructions:
            name = f"w[{ins.i_in},{ins.i_out}] {irreps_in[ins.i_in]},{irreps_out[ins.i_out]}"
            w = self.param(name, nn.initializers.normal(stddev=ins.weight_std), ins.path_shape, dtype)
            y = ins.path_weight * (blocks[irreps_in[ins.i_in].ir] @ w)
            out[ins.i_out] = out[ins.i_out] + y if ins.i_out in out else y
        return jnp.concatenate([out[k] for k in range(len(irreps_out))], axis=1)
