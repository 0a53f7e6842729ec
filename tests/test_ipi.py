"""A real i-PI server (the shipped example input, shortened) on a UNIX socket in a temporary folder,
driven through `legato ipi`: the potential energies i-PI logs equal our calculator's on the beads
i-PI wrote."""

import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from ase.io import read

from legato_jax.calculators import LegatoCalculator
from legato_jax.cli.main import main as cli
from tests.test_md_run import TINY

pytest.importorskip("ipi", reason="i-PI is not installed (pip install ipi, or the dev/ipi extras)")

EXAMPLE = Path(__file__).parents[1] / "configs" / "ipi"


def ipi_input(folder: Path, steps: int, beads: int) -> Path:
    tree = ET.parse(EXAMPLE / "ammonia_pimd.xml")
    root = tree.getroot()
    root.set("sockets_prefix", f"{folder}/ipi_")
    root.find("total_steps").text = str(steps)
    root.find("system/initialize").set("nbeads", str(beads))
    for tag in ("output/properties", "output/trajectory"):
        root.find(tag).set("stride", "1")
    root.find("output/checkpoint").set("stride", str(10 * steps))
    shutil.copy(EXAMPLE / "ammonia_64.extxyz", folder)
    tree.write(folder / "input.xml")
    return folder / "input.xml"


def test_ipi_drives_pimd_through_legato_ipi(tmp_path):
    steps, beads = 4, 2
    ipi = shutil.which("i-pi", path=str(Path(sys.executable).parent)) or shutil.which("i-pi")
    assert ipi, "the ipi package is installed but its i-pi script is not on PATH"
    server = subprocess.Popen([ipi, str(ipi_input(tmp_path, steps, beads))], cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        code = cli(["ipi", "--model", str(TINY), "--unix", str(tmp_path / "ipi_legato"),
                    "--structure", str(tmp_path / "ammonia_64.extxyz"), "--wait", "120"])
        log, _ = server.communicate(timeout=120)
    finally:
        server.kill()
    assert code == 0 and server.returncode == 0, log[-2000:]
    table = np.loadtxt(tmp_path / "ammonia_pimd.out")
    assert table.shape == (steps + 1, 9)
    cell = read(EXAMPLE / "ammonia_64.extxyz")
    calc = LegatoCalculator.from_file(TINY)
    bead_frames = [read(tmp_path / f"ammonia_pimd.pos_{j}.xyz", ":", format="xyz") for j in range(beads)]
    ours = []
    for step in range(steps + 1):
        energies = []
        for frames in bead_frames:
            atoms = cell.copy()
            atoms.positions = frames[step].positions
            atoms.calc = calc
            energies.append(atoms.get_potential_energy())
        ours.append(np.mean(energies))
    # i-PI's potential (column 5, eV) is the bead average; float32 model, positions rounded on file
    assert np.allclose(table[:, 4], ours, rtol=0, atol=2e-3)
    assert np.all(np.diff(table[:, 0]) == 1)
    assert np.ptp(table[:, 4]) > 0.01  # it moved
    kinetic_h, kinetic_n = table[:, 6], table[:, 7]
    assert np.all(kinetic_h > 0) and np.all(kinetic_n > 0)


def test_ipi_client_without_a_server_says_so(tmp_path, capsys):
    assert cli(["ipi", "--model", str(TINY), "--unix", str(tmp_path / "none"), "--structure",
                str(EXAMPLE / "ammonia_64.extxyz"), "--wait", "0.5"]) != 0
    assert "no i-PI server" in capsys.readouterr().err
