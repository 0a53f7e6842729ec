"""Why the temperature criterion of the `stressed` preset does not depend on system size: it reads
`legato md --log` thermo files of that preset at several sizes and prints, per model and size, when
the temperature first leaves 100-300 K and how fast the Nose-Hoover invariant (the energy the
thermostat cannot remove) grows per atom. A per-atom rate that does not change with N means the
whole system heats uniformly, so the window is left at a size-independent time.

Files are named MODEL_ATOMS_sSEED.csv, e.g. from
    legato md --model allegro --ammonia 16 --preset stressed --steps 200 --log-every 2 --seed 0 \
        --health off --log DIR/allegro_64_s0.csv
Usage: python scripts/stressed_heating.py DIR [--json OUT]
"""

from __future__ import annotations

import argparse
import csv
import json
import re
from collections import defaultdict
from pathlib import Path

import numpy as np

NAME = re.compile(r"(?P<model>.+)_(?P<atoms>\d+)_s(?P<seed>\d+)\.csv$")


def read_run(path: Path) -> dict[str, np.ndarray]:
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        raise SystemExit(f"{path}: no thermo rows; rerun its legato md with --log")
    return {k: np.array([float(r[k]) for r in rows]) for k in ("time_fs", "temperature_K", "conserved_eV")}


def heating(run: dict[str, np.ndarray], atoms: int, window: tuple[float, float] = (100.0, 300.0),
            early_fs: float = 90.0) -> dict[str, float]:
    """Exit time from the window, the invariant's rise per atom over the first `early_fs` (before
    most replicas leave the window) and the temperature's maximum."""
    t, temp, inv = run["time_fs"], run["temperature_K"], run["conserved_eV"]
    outside = np.flatnonzero((temp < window[0]) | (temp > window[1]))
    early = t <= early_fs
    return {"exit_fs": float(t[outside[0]]) if outside.size else float("nan"),
            "invariant_rise_meV_per_atom": 1000 * float(inv[early][-1] - inv[0]) / atoms,
            "invariant_rate_meV_per_atom_ps": 1000 * float(np.polyfit(t[early] / 1000, inv[early], 1)[0]) / atoms,
            "max_T_K": float(temp.max())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    groups: dict[tuple[str, int], list[dict]] = defaultdict(list)
    for path in sorted(args.folder.glob("*.csv")):
        m = NAME.match(path.name)
        if m is None:
            raise SystemExit(f"{path}: name it MODEL_ATOMS_sSEED.csv (e.g. allegro_64_s0.csv)")
        atoms = int(m["atoms"])
        groups[(m["model"], atoms)].append(heating(read_run(path), atoms))
    if not groups:
        raise SystemExit(f"{args.folder}: no MODEL_ATOMS_sSEED.csv thermo files")
    print(f"{'model':<10}{'atoms':>7}{'runs':>6}{'T leaves 100-300 K, fs':>25}{'invariant rise to 90 fs':>26}"
          f"{'rate':>16}{'max T':>9}")
    print(f"{'':<10}{'':>7}{'':>6}{'(each run)':>25}{'meV/atom':>26}{'meV/atom/ps':>16}{'K':>9}")
    table = []
    for (model, atoms), runs in sorted(groups.items()):
        exits = ", ".join(f"{r['exit_fs']:.0f}" for r in runs)
        rise = np.mean([r["invariant_rise_meV_per_atom"] for r in runs])
        rate = np.mean([r["invariant_rate_meV_per_atom_ps"] for r in runs])
        top = np.mean([r["max_T_K"] for r in runs])
        print(f"{model:<10}{atoms:>7}{len(runs):>6}{exits:>25}{rise:>26.2f}{rate:>16.1f}{top:>9.0f}")
        table.append({"model": model, "atoms": atoms, "runs": runs})
    if args.json:
        args.json.write_text(json.dumps(table, indent=1))


if __name__ == "__main__":
    main()
