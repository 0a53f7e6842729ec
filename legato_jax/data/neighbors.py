"""Host-side periodic neighbour lists (vesin) with integer cell shifts.

Edges follow ASE's convention: for each pair (i, j, S), the vector from the centre i to the
neighbour j is r_ij = r_j - r_i + S @ cell. Cells shorter than twice the cutoff give several
images of one neighbour (and of the atom itself); all are returned.
"""

from __future__ import annotations

import numpy as np

from legato_jax.errors import DataError


def neighbor_list(
    positions: np.ndarray,
    cell: np.ndarray,
    pbc,
    cutoff: float,
    with_distances: bool = False,
):
    """Full neighbour list within `cutoff` Å: arrays (i, j, shifts[, distances]), sorted by (i, j).

    Non-periodic directions take no images; a fully non-periodic frame may have any cell.
    """
    from vesin import NeighborList

    if not cutoff > 0:
        raise DataError(f"neighbour-list cutoff must be > 0 Å, got {cutoff}")
    positions = np.ascontiguousarray(positions, dtype=np.float64)
    pbc = np.broadcast_to(np.asarray(pbc, dtype=bool), (3,))
    box = np.asarray(cell, dtype=np.float64)
    if not pbc.any():
        box = np.zeros((3, 3))
    elif not pbc.all():
        # vesin needs a full-rank box; the non-periodic vectors never produce images.
        box = _complete_box(box, pbc, positions)
    calc = NeighborList(cutoff=float(cutoff), full_list=True)
    i, j, shifts, d = calc.compute(points=positions, box=box, periodic=pbc, quantities="ijSd")
    order = np.lexsort((shifts[:, 2], shifts[:, 1], shifts[:, 0], j, i))
    i, j, shifts, d = i[order], j[order], shifts[order], d[order]
    out = (i.astype(np.int32), j.astype(np.int32), shifts.astype(np.int32))
    return out + (d,) if with_distances else out


def _complete_box(box: np.ndarray, pbc: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Replace the vectors of non-periodic directions by long orthogonal ones."""
    box = box.copy()
    extent = np.ptp(positions, axis=0).max() + 1.0 if len(positions) else 1.0
    for axis in np.flatnonzero(~pbc):
        others = [box[k] for k in range(3) if k != axis]
        normal = np.cross(others[0], others[1])
        norm = np.linalg.norm(normal)
        if norm == 0:
            normal = np.eye(3)[axis]
            norm = 1.0
        box[axis] = normal / norm * (extent + np.abs(box).sum() + 1.0)
    return box
