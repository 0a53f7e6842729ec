"""The shipped i-PI example (configs/ipi/ammonia_pimd.xml) run by i-PI with `legato ipi` serving the
forces, in FOLDER with STEPS steps and BEADS beads; prints the production averages (the first
--equilibrate steps dropped) as JSON: per-atom centroid-virial kinetic energy of H and N, potential
energy, and the wall time per step.

    python scripts/ipi_ammonia.py FOLDER STEPS BEADS [--model legato] [--equilibrate 1000] [--dt 0.5] [--splitting baoab] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
from ase.io import read

from legato_jax.analysis.timeseries import block_standard_error, mean_and_error
from legato_jax.outputs import atomic_write_text

EXAMPLE = Path(__file__).parents[1] / "configs" / "ipi"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder")
    p.add_argument("steps", type=int)
    p.add_argument("beads", type=int)
    p.add_argument("--model", default="legato")
    p.add_argument("--equilibrate", type=int, default=1000)
    p.add_argument("--dt", type=float, help="time step in fs (default: the example's)")
    p.add_argument("--splitting", choices=["obabo", "baoab"], help="i-PI's integrator splitting (default: i-PI's, obabo)")
    p.add_argument("--json", help="write the averages here too")
    args = p.parse_args()
    folder = Path(args.folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    tree = ET.parse(EXAMPLE / "ammonia_pimd.xml")
    root = tree.getroot()
    root.set("sockets_prefix", f"{folder}/ipi_")
    root.find("total_steps").text = str(args.steps)
    root.find("system/initialize").set("nbeads", str(args.beads))
    if args.splitting is not None:
        root.find("system/motion/dynamics").set("splitting", args.splitting)
    if args.dt is not None:
        root.find("system/motion/dynamics/timestep").text = str(args.dt)
    shutil.copy(EXAMPLE / "ammonia_64.extxyz", folder)
    tree.write(folder / "input.xml")
    ipi = shutil.which("i-pi", path=str(Path(sys.executable).parent)) or "i-pi"
    t0 = time.perf_counter()
    server = subprocess.Popen([ipi, "input.xml"], cwd=folder, stdout=open(folder / "ipi.log", "w"), stderr=subprocess.STDOUT)
    client = subprocess.run([str(Path(sys.executable).parent / "legato"), "ipi", "--model", args.model, "--unix",
                             str(folder / "ipi_legato"), "--structure", str(folder / "ammonia_64.extxyz")],
                            stdout=open(folder / "client.log", "w"), stderr=subprocess.STDOUT)
    server.wait(timeout=600)
    wall = time.perf_counter() - t0
    if client.returncode or server.returncode:
        raise SystemExit(f"i-PI ({server.returncode}) or legato ipi ({client.returncode}) failed; "
                         f"see {folder}/ipi.log and {folder}/client.log")
    table = np.loadtxt(folder / "ammonia_pimd.out")
    prod = table[table[:, 0] > args.equilibrate]
    numbers = read(EXAMPLE / "ammonia_64.extxyz").numbers
    n_h, n_n = int((numbers == 1).sum()), int((numbers == 7).sum())
    out = {"beads": args.beads, "steps": args.steps, "dt_fs": args.dt or 0.5, "splitting": args.splitting or "obabo", "equilibrate": args.equilibrate, "rows": len(prod),
           "wall_s": wall, "step_s": wall / args.steps}
    for key, col, n in (("kinetic_H_eV", 6, n_h), ("kinetic_N_eV", 7, n_n), ("kinetic_virial_eV", 5, 1),
                        ("potential_eV", 4, 1), ("temperature_K", 3, 1), ("pressure_GPa", 8, 1)):
        m = mean_and_error(prod[:, col] / n)
        out[key], out[key + "_err"], out[key + "_tau_rows"], out[key + "_reliable"] = m.mean, m.error, m.tau, m.reliable
        out[key + "_block_err"] = block_standard_error(prod[:, col] / n, max(1, len(prod) // 10))
    text = json.dumps(out, indent=1)
    print(text)
    if args.json:
        atomic_write_text(args.json, text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
