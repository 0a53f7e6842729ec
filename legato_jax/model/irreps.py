"""Which irreps each Allegro layer carries: forward- and backward-pruned tensor-product paths."""

from __future__ import annotations

import e3nn_jax as e3nn


def sh_irreps(l_max: int, parity: str) -> e3nn.Irreps:
    """Spherical-harmonic irreps 0..l_max; parity (-1)^l, or all even for so3."""
    if parity == "so3":
        return e3nn.Irreps([(1, (l, 1)) for l in range(l_max + 1)])
    return e3nn.Irreps([(1, (l, (-1) ** l)) for l in range(l_max + 1)])


def _candidates(l_max: int, parity: str, last: bool) -> list[e3nn.Irrep]:
    if last:
        return [e3nn.Irrep("0e")]
    if parity == "o3_full":
        return [e3nn.Irrep(l, p) for l in range(l_max + 1) for p in (1, -1)]
    return [ir for _, ir in sh_irreps(l_max, parity)]


def _products(args: list[e3nn.Irrep], sh: list[e3nn.Irrep]) -> set[e3nn.Irrep]:
    return {ir for a in args for s in sh for ir in a * s}


def layer_irreps(l_max: int, parity: str, num_layers: int) -> list[tuple[e3nn.Irreps, e3nn.Irreps]]:
    """(argument irreps, output irreps) of each layer's tensor product with the SH.

    Forward: an output is kept if some argument x SH reaches it. Backward: an argument (the
    previous layer's output) is kept only if it reaches some output of its own layer. The last
    layer outputs only scalars (0e).
    """
    sh = [ir for _, ir in sh_irreps(l_max, parity)]
    args = list(sh)
    plan = []
    for k in range(num_layers):
        reach = _products(args, sh)
        outs = [ir for ir in _candidates(l_max, parity, k == num_layers - 1) if ir in reach]
        plan.append([args, outs])
        args = outs
    for k in range(num_layers - 1, 0, -1):
        keep = [a for a in plan[k][0] if any(ir in plan[k][1] for s in sh for ir in a * s)]
        plan[k][0] = keep
        plan[k - 1][1] = [ir for ir in plan[k - 1][1] if ir in keep]
    return [(e3nn.Irreps([(1, ir) for ir in a]), e3nn.Irreps([(1, ir) for ir in o])) for a, o in plan]
