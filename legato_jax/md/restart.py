"""Continuing a run exactly: checkpoints of the full MD state (positions, momenta, masses, cell,
thermostat) at full precision, and restarts from them or from any trajectory frame with momenta."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms

from legato_jax.errors import ConfigError, DataError
from legato_jax.outputs import atomic_write_npz

FORMAT = "legato-md-checkpoint-1"


@dataclass(frozen=True)
class Restart:
    """Where a continued run starts: `atoms` with positions, momenta and masses; the Nose-Hoover
    chain (position, momentum) or the Langevin key of the stage that wrote it, where a checkpoint
    carries them; `step` counts the steps the state has behind it."""

    atoms: Atoms
    step: int = 0
    chain_position: np.ndarray | None = None
    chain_momentum: np.ndarray | None = None
    rng: np.ndarray | None = None
    source: str = ""


def write_checkpoint(path: str | Path, atoms: Atoms, step: int, state=None) -> None:
    """The state after `step` steps as an .npz, through a temporary file and a rename."""
    path = Path(path)
    data = {"format": np.array(FORMAT), "numbers": atoms.numbers, "positions": atoms.positions,
            "momenta": atoms.get_momenta(), "masses": atoms.get_masses(), "cell": atoms.cell.array,
            "pbc": atoms.pbc, "step": np.array(step)}
    chain = getattr(state, "chain", None)
    if chain is not None:
        data["chain_position"] = np.asarray(chain.position, float)
        data["chain_momentum"] = np.asarray(chain.momentum, float)
    rng = getattr(state, "rng", None)
    if rng is not None:
        data["rng"] = np.asarray(rng)
    atomic_write_npz(path, data)


def read_restart(path: str | Path, frame: int = -1) -> Restart:
    """A checkpoint (.npz) or one frame of a trajectory (any ASE-readable file whose frames carry
    momenta; masses where they carry them, standard masses otherwise)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"--restart {path}: no such file")
    if path.suffix == ".npz":
        return _read_checkpoint(path)
    from legato_jax.md.systems import load_structure

    atoms = load_structure(path, frame)
    if not atoms.has("momenta"):
        raise DataError(f"--restart {path}, frame {frame}: the frame has no momenta; give a trajectory written by "
                        "`legato md --out` or a checkpoint (--checkpoint), or start with --structure")
    return Restart(atoms, int(atoms.info.get("step", 0)), source=f"{path}, frame {frame}")


def _read_checkpoint(path: Path) -> Restart:
    try:
        with np.load(path, allow_pickle=False) as f:
            data = {k: f[k] for k in f.files}
    except Exception as exc:  # zipfile, pickle and value errors for damaged files
        raise DataError(f"--restart {path}: not a readable checkpoint ({type(exc).__name__}); "
                        "give a file written by `legato md --checkpoint`") from None
    if str(data.get("format", "")) != FORMAT:
        raise DataError(f"--restart {path}: not a legato MD checkpoint (no format {FORMAT!r}); "
                        "give a file written by `legato md --checkpoint`")
    atoms = Atoms(numbers=data["numbers"], positions=data["positions"], cell=data["cell"], pbc=data["pbc"],
                  masses=data["masses"])
    atoms.set_momenta(data["momenta"], apply_constraint=False)
    return Restart(atoms, int(data["step"]), data.get("chain_position"), data.get("chain_momentum"),
                   data.get("rng"), source=str(path))


def check_masses(restart: Restart, hydrogen_mass: float | None, option: str) -> None:
    """Refuse a hydrogen mass that differs from the one the restarted state was run with."""
    h = restart.atoms.numbers == 1
    if hydrogen_mass is None or not h.any():
        return
    carried = float(restart.atoms.get_masses()[h][0])
    if not np.isclose(carried, hydrogen_mass, rtol=1e-6):
        raise ConfigError(f"{option} {hydrogen_mass} differs from the hydrogen mass {carried:g} amu that "
                          f"{restart.source} was run with; drop {option} to continue with the file's masses")
