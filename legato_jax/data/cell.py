"""Cell geometry: the widths of a periodic cell between opposite faces, and whether it is
orthorhombic. Rows of `cell` are the lattice vectors (Å)."""

from __future__ import annotations

import numpy as np


def perpendicular_widths(cell: np.ndarray) -> np.ndarray:
    """Distance between opposite faces of the cell along each lattice direction (Å), shape (3,)."""
    cell = np.asarray(cell, dtype=float)
    volume = abs(np.linalg.det(cell))
    a, b, c = cell
    areas = np.array(
        [np.linalg.norm(np.cross(b, c)), np.linalg.norm(np.cross(c, a)), np.linalg.norm(np.cross(a, b))]
    )
    return volume / areas


def is_orthorhombic(cell: np.ndarray) -> bool:
    """True when every off-diagonal entry of the (3, 3) cell is zero (to 1e-10 Å)."""
    cell = np.asarray(cell)
    return bool(np.allclose(cell - np.diag(np.diag(cell)), 0.0, atol=1e-10))
