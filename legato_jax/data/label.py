"""Reference labels for structures the model produced: frames of an MD or PIMD trajectory
(`legato md --out`, `legato pimd --beads-out`) recomputed with GFN1-xTB and written as training
data. This is the active-learning step that teaches a model the regions its own dynamics found
(e.g. the compressed H-N-H angles that path integrals reach) and its training data lacked.

Each labelled frame records where it came from (`source`, `source_index`), so a rerun appends
only the frames not yet labelled and an interrupted run loses at most the frame in flight.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import iread, write

from legato_jax.errors import ConfigError

METHODS = ("GFN1-xTB", "GFN2-xTB")


def reference_calculator(method: str):
    """tblite's ASE calculator for `method` (GFN1-xTB is the shipped data's reference)."""
    if method not in METHODS:
        raise ConfigError(f"unknown reference method {method!r}; choose one of {', '.join(METHODS)}")
    from tblite.ase import TBLite

    return TBLite(method=method, verbosity=0)


def labelled_copy(atoms: Atoms, info: dict) -> Atoms:
    """A bare copy of `atoms` carrying its calculator's energy, forces and (if periodic) stress.

    Forces and stress are read without constraints: an MD's FixCom would otherwise alter them
    (it subtracts m_i (sum_j m_j F_j) / sum_j m_j^2, up to 0.5 eV/Å on nitrogen)."""
    frame = Atoms(atoms.symbols, atoms.get_positions(), cell=atoms.cell, pbc=atoms.pbc)
    frame.info.update(info)
    results = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces(apply_constraint=False)}
    results["free_energy"] = results["energy"]
    if atoms.pbc.all():
        results["stress"] = atoms.get_stress(voigt=False, apply_constraint=False)
    frame.calc = SinglePointCalculator(frame, **results)
    return frame


@dataclass(frozen=True)
class LabelReport:
    source: str
    selected: int  # frames of the source that --start/--every/--max-frames pick
    already: int  # of those, labelled by an earlier run
    labelled: int  # labelled now
    output: str
    failed: tuple[int, ...] = ()  # frames the reference could not label (skipped with skip_failed)


def _labelled_indices(out: Path, source: str) -> set[int]:
    if not out.exists() or out.stat().st_size == 0:
        return set()
    return {int(a.info["source_index"]) for a in iread(out, index=":", format="extxyz")
            if a.info.get("source") == source and "source_index" in a.info}


def _selected(src: Path, start: int, every: int, max_frames: int | None) -> Iterator[tuple[int, Atoms]]:
    picked = 0
    try:
        frames = iread(src, index=":")
        for index, atoms in enumerate(frames):
            if index < start or (index - start) % every:
                continue
            if max_frames is not None and picked >= max_frames:
                return
            picked += 1
            yield index, atoms
    except (StopIteration, ValueError, KeyError) as err:
        raise ConfigError(f"{src}: cannot read frames ({err}); give an ASE-readable trajectory (extxyz)") from err


def label_file(src: str | Path, out: str | Path, method: str = "GFN1-xTB", start: int = 0, every: int = 1,
               max_frames: int | None = None, config_type: str | None = None,
               log: Callable[[str], None] | None = None, skip_failed: bool = False) -> LabelReport:
    """Label frames `start`, `start + every`, ... of `src` with `method` and append them to `out`.

    A frame the reference cannot label (SCF not converged, e.g. a molecule torn apart) stops the
    run, or with `skip_failed` is logged, left out and listed in the report's `failed`."""
    src, out = Path(src), Path(out)
    if not src.is_file():
        raise ConfigError(f"{src}: no such file; give the trajectory to label (e.g. legato pimd --beads-out)")
    if every < 1 or start < 0 or (max_frames is not None and max_frames < 1):
        raise ConfigError("--every and --max-frames must be positive and --start non-negative")
    if out.suffix not in (".extxyz", ".xyz"):
        raise ConfigError(f"{out}: the labels are written as extended XYZ; name the file *.extxyz")
    if out.resolve() == src.resolve():
        raise ConfigError(f"{out}: the output must differ from the trajectory it labels")
    calc = reference_calculator(method)
    done = _labelled_indices(out, str(src))
    selected = already = labelled = 0
    failed: list[int] = []
    for index, atoms in _selected(src, start, every, max_frames):
        selected += 1
        if index in done:
            already += 1
            continue
        bare = Atoms(atoms.symbols, atoms.get_positions(), cell=atoms.cell, pbc=atoms.pbc)
        bare.calc = calc
        try:
            frame = labelled_copy(bare, {
                "config_type": config_type or f"labelled_{src.stem}", "source": str(src),
                "source_index": index, "method": method,
            })
        except Exception as err:  # tblite reports SCF failures as plain exceptions
            if not skip_failed:
                raise ConfigError(f"{src}, frame {index}: {method} failed ({err}); leave such frames out with "
                                  "--skip-failed, or skip it with --start/--every") from err
            failed.append(index)
            if log is not None:
                log(f"{src.name} frame {index}: {method} failed ({err}); left out")
            continue
        if not np.all(np.isfinite(frame.get_forces())):
            raise ConfigError(f"{src}, frame {index}: {method} gave non-finite forces")
        write(out, frame, format="extxyz", append=True)
        labelled += 1
        if log is not None:
            log(f"{src.name} frame {index}: E = {frame.get_potential_energy():.4f} eV")
    if selected == 0:
        raise ConfigError(f"{src}: no frame selected (start {start}, every {every}); lower --start")
    return LabelReport(str(src), selected, already, labelled, str(out), tuple(failed))
