"""Reading labelled frames from extxyz or any ASE-readable file, with validation of every frame.

Labels come from the calculator results ASE attaches on reading (keys `energy`, `forces`,
`stress`) or from `info`/`arrays` under configurable keys (as MACE's `--energy_key`).
Every problem is reported with the file, the frame index and what to do about it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from ase import Atoms

from legato_jax.errors import DataError
from legato_jax.shipped import locate, missing_hint


@dataclass(frozen=True)
class LabelKeys:
    """Where to find the labels of a frame (calculator results first, then info/arrays)."""

    energy: str = "energy"
    forces: str = "forces"
    stress: str = "stress"


@dataclass(frozen=True)
class Frame:
    """One labelled configuration. Stress is a full 3x3 in eV/Å^3 with ASE's sign, or None."""

    positions: np.ndarray
    numbers: np.ndarray
    cell: np.ndarray
    pbc: np.ndarray
    energy: float
    forces: np.ndarray
    stress: np.ndarray | None
    source: str
    info: dict

    @property
    def n_atoms(self) -> int:
        return int(self.numbers.shape[0])

    def to_atoms(self) -> Atoms:
        return Atoms(numbers=self.numbers, positions=self.positions, cell=self.cell, pbc=self.pbc)


def _lookup(atoms: Atoms, key: str, per_atom: bool):
    calc = atoms.calc
    if calc is not None and key in getattr(calc, "results", {}):
        return calc.results[key]
    if per_atom and key in atoms.arrays:
        return atoms.arrays[key]
    if key in atoms.info:
        return atoms.info[key]
    return None


def _stress_3x3(value, where: str) -> np.ndarray:
    s = np.asarray(value, dtype=float)
    if s.shape == (6,):
        xx, yy, zz, yz, xz, xy = s
        return np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])
    if s.shape == (9,):
        return s.reshape(3, 3)
    if s.shape == (3, 3):
        return s
    raise DataError(f"{where}: stress has shape {s.shape}; expected 6 (Voigt), 9 or 3x3 values")


def frame_from_atoms(
    atoms: Atoms,
    where: str,
    keys: LabelKeys = LabelKeys(),
    type_map: Sequence[str] | None = None,
    min_distance: float = 0.5,
    require_stress: bool = False,
) -> Frame:
    """Validate one ASE frame and return it as a `Frame`; `where` names it in errors."""
    n = len(atoms)
    if n == 0:
        raise DataError(f"{where}: frame has no atoms")
    positions = np.asarray(atoms.get_positions(), dtype=float)
    if not np.all(np.isfinite(positions)):
        raise DataError(f"{where}: positions contain NaN or inf")

    energy = _lookup(atoms, keys.energy, per_atom=False)
    if energy is None:
        raise DataError(
            f"{where}: no energy under key '{keys.energy}' (calculator results or info); "
            f"pass --energy-key with the key your file uses"
        )
    energy_arr = np.asarray(energy, dtype=float)
    if energy_arr.size != 1:
        raise DataError(f"{where}: energy '{keys.energy}' has {energy_arr.size} values; expected 1")
    energy = float(energy_arr.reshape(()))
    if not np.isfinite(energy):
        raise DataError(f"{where}: energy '{keys.energy}' is not finite ({energy})")

    forces = _lookup(atoms, keys.forces, per_atom=True)
    if forces is None:
        raise DataError(
            f"{where}: no forces under key '{keys.forces}' (calculator results or arrays); "
            f"pass --forces-key with the key your file uses"
        )
    forces = np.asarray(forces, dtype=float)
    if forces.shape != (n, 3):
        raise DataError(
            f"{where}: forces '{keys.forces}' have shape {forces.shape}; expected ({n}, 3)"
        )
    if not np.all(np.isfinite(forces)):
        bad = int(np.flatnonzero(~np.isfinite(forces).all(axis=1))[0])
        raise DataError(f"{where}: forces '{keys.forces}' are not finite (first at atom {bad})")

    stress = _lookup(atoms, keys.stress, per_atom=False)
    if stress is not None:
        stress = _stress_3x3(stress, where)
        if not np.all(np.isfinite(stress)):
            raise DataError(f"{where}: stress '{keys.stress}' is not finite")
    elif require_stress:
        raise DataError(f"{where}: no stress under key '{keys.stress}'; pass --stress-key")

    numbers = np.asarray(atoms.numbers, dtype=np.int64)
    if type_map is not None:
        symbols = atoms.get_chemical_symbols()
        unknown = sorted(set(symbols) - set(type_map))
        if unknown:
            raise DataError(
                f"{where}: unknown species {unknown}; the type map is {list(type_map)} "
                f"(add them to the model's species or remove these frames)"
            )

    pbc = np.asarray(atoms.pbc, dtype=bool)
    cell = np.asarray(atoms.cell.array, dtype=float)
    _check_cell(cell, pbc, where)
    if min_distance > 0 and n > 1:
        check_min_distance(positions, cell, pbc, min_distance, where)

    return Frame(
        positions=positions,
        numbers=numbers,
        cell=cell,
        pbc=pbc,
        energy=energy,
        forces=forces,
        stress=stress,
        source=where,
        info=dict(atoms.info),
    )


def _check_cell(cell: np.ndarray, pbc: np.ndarray, where: str) -> None:
    if not np.all(np.isfinite(cell)):
        raise DataError(f"{where}: cell contains NaN or inf")
    if not pbc.any():
        return
    lengths = np.linalg.norm(cell, axis=1)
    if np.any(lengths[pbc] <= 0):
        axis = int(np.flatnonzero(pbc & (lengths <= 0))[0])
        raise DataError(f"{where}: periodic cell vector {axis} has zero length")
    if pbc.all():
        volume = float(np.linalg.det(cell))
        if volume <= 1e-6:
            raise DataError(
                f"{where}: cell has zero or negative volume ({volume:.6g} Å^3); the rows of "
                f"Lattice must be right-handed, linearly independent lattice vectors"
            )


def check_min_distance(positions, cell, pbc, threshold: float, where: str) -> None:
    """Raise a DataError naming the closest pair when two atoms are nearer than `threshold` Å."""
    from legato_jax.data.neighbors import neighbor_list

    i, j, _, d = neighbor_list(positions, cell, pbc, threshold, with_distances=True)
    if d.size:
        k = int(np.argmin(d))
        raise DataError(
            f"{where}: atoms {i[k]} and {j[k]} are {d[k]:.3f} Å apart, closer than the "
            f"minimum distance {threshold} Å (fix the structure or lower --min-distance)"
        )


_COMPRESSED = {".xz": "lzma", ".gz": "gzip", ".bz2": "bz2"}


def read_images(path: str | Path, index: str = ":", file_format: str | None = None):
    """ase.io.read, decompressing .xz/.gz/.bz2 in memory first: ASE's own reader re-decompresses
    from the start for every frame it seeks to, which is quadratic in the number of frames."""
    import importlib
    import io

    from ase.io import read

    path = Path(path)
    module = _COMPRESSED.get(path.suffix)
    if module is None:
        if (file_format or path.suffix.lstrip(".")) in _TEXT_FORMATS:
            with path.open("rb") as fh:
                fh.seek(-1, 2)
                _check_complete(fh.read(1).decode("latin-1"), path)
        return read(path, index=index, format=file_format)
    inner = Path(path.stem).suffix.lstrip(".")
    fmt = file_format or {"xyz": "extxyz", "": "extxyz"}.get(inner, inner)
    with importlib.import_module(module).open(path, "rt") as fh:
        text = fh.read()
    if fmt in _TEXT_FORMATS:
        _check_complete(text[-1:], path)
    return read(io.StringIO(text), index=index, format=fmt)


_TEXT_FORMATS = {"extxyz", "xyz"}


def _check_complete(last_char: str, path: Path) -> None:
    """A text trajectory whose last line has no newline was cut while written: ASE would read
    a number cut short (`1.2` of `1.25e-3`) as a valid value."""
    if last_char not in ("\n", "\r", ""):
        raise DataError(
            f"{path}: ends inside a line (the file was cut while written); "
            "remove the incomplete last frame or regenerate the file"
        )


def read_frames(
    path: str | Path,
    keys: LabelKeys = LabelKeys(),
    type_map: Sequence[str] | None = None,
    min_distance: float = 0.5,
    index: str = ":",
    file_format: str | None = None,
) -> list[Frame]:
    """Read and validate every frame of `path` (extxyz or any format ASE reads; `ammonia` or
    `data/ammonia.extxyz.xz` name the shipped dataset)."""
    path = locate(path, "dataset")
    if not path.exists():
        raise DataError(f"{path}: no such file{missing_hint(path, 'dataset')}")
    if path.is_dir():
        raise DataError(f"{path}: is a directory; give a data file (extxyz or ASE-readable)")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty")
    try:
        images = read_images(path, index, file_format)
    except DataError:
        raise
    except Exception as exc:  # ASE raises many types for unreadable files
        raise DataError(
            f"{path}: cannot be read by ASE ({type(exc).__name__}: {exc}); "
            f"give an extxyz file or name the format"
        ) from exc
    if isinstance(images, Atoms):
        images = [images]
    if len(images) == 0:
        raise DataError(f"{path}: contains no frames")
    return [
        frame_from_atoms(atoms, f"{path}, frame {k}", keys, type_map, min_distance)
        for k, atoms in enumerate(images)
    ]
