"""`legato model export`: the artifact runs with jax alone and equals LegatoCalculator."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from ase.io import read

from legato_jax.calculators import LegatoCalculator
from legato_jax.cli.main import main as cli
from legato_jax.data.ammonia import AMMONIA_CELL

TINY = Path(__file__).parent / "data" / "ammonia-tiny.npz"

# A consumer with jax and ASE only: no legato_jax module may be imported.
CONSUMER = r"""
import base64, json, sys
import numpy as np
import jax
jax.config.update("jax_enable_x64", True)
from ase.io import read
from ase.neighborlist import neighbor_list

bundle = json.load(open(sys.argv[1]))
c = bundle["contract"]
call = jax.export.deserialize(bytearray(base64.b64decode(bundle["program_b64"]))).call
atoms = read(sys.argv[2])
i, j, S = neighbor_list("ijS", atoms, c["cutoff"])
n, e = len(atoms), len(i)
pad = lambda a, size: np.concatenate([a, np.zeros((size - len(a),) + a.shape[1:], a.dtype)])
index = {s: k for k, s in enumerate(c["species"])}
out = call(pad(atoms.positions, c["max_atoms"]), pad(np.array([index[s] for s in atoms.get_chemical_symbols()], np.int32), c["max_atoms"]),
           atoms.cell.array, pad(j.astype(np.int32), c["max_edges"]), pad(i.astype(np.int32), c["max_edges"]),
           pad(S.astype(np.int32), c["max_edges"]), np.int32(n), np.int32(e))
energy, energies, forces, stress = (np.asarray(x) for x in out)
assert not any(m.startswith("legato_jax") for m in sys.modules)
print(json.dumps({"energy": float(energy), "forces": forces[:n].tolist(), "stress": stress.tolist(),
                  "pad_forces": float(np.abs(forces[n:]).max())}))
"""


def test_exported_model_runs_with_jax_alone_and_equals_the_calculator(tmp_path, capsys):
    out = tmp_path / "tiny.json"
    assert cli(["model", "export", str(TINY), str(out), "--max-atoms", "80", "--max-edges", "4000",
                "--precision", "float64", "--json"]) == 0
    contract = json.loads(capsys.readouterr().out)
    assert contract["species"] == ["H", "N"] and contract["max_atoms"] == 80 and contract["dtype"] == "float64"
    atoms = read(AMMONIA_CELL)
    atoms.positions += np.random.default_rng(0).normal(0, 0.05, atoms.positions.shape)
    structure = tmp_path / "cell.extxyz"
    atoms.write(structure)
    script = tmp_path / "consumer.py"
    script.write_text(CONSUMER)
    proc = subprocess.run([sys.executable, str(script), str(out), str(structure)], capture_output=True, text=True,
                          timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout)
    from legato_jax.md.run import with_precision
    from legato_jax.model.io import load_model

    import jax

    with jax.enable_x64(True):
        potential, params, _ = load_model(TINY)
        potential, params = with_precision(potential, params, "float64")
        atoms.calc = LegatoCalculator(potential, params)
        ref_e, ref_f, ref_s = atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress(voigt=False)
    assert abs(got["energy"] - ref_e) < 1e-6
    np.testing.assert_allclose(got["forces"], ref_f, atol=1e-6)
    np.testing.assert_allclose(got["stress"], ref_s, atol=1e-6)
    assert got["pad_forces"] == 0.0


def test_an_export_too_small_for_the_structure_is_refused(tmp_path, capsys):
    from legato_jax.model.export import inputs_for, load_exported

    out = tmp_path / "small.json"
    assert cli(["model", "export", str(TINY), str(out), "--max-atoms", "8"]) == 0
    call, contract = load_exported(out)
    try:
        inputs_for(read(AMMONIA_CELL), contract)
    except ValueError as exc:
        assert "exceed the artifact's capacities 8" in str(exc)
    else:
        raise AssertionError("64 atoms fitted a capacity of 8")
