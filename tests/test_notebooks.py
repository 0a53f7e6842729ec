"""Tutorial notebooks run end to end (they use tiny settings)."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["train_legato.ipynb", "fidelity_scaling.ipynb", "nuclear_quantum_effects.ipynb"])
def test_notebook_executes(name, tmp_path, monkeypatch):
    if not (ROOT / "data" / "ammonia.extxyz.xz").exists():
        pytest.fail("the shipped dataset data/ammonia.extxyz.xz is missing")
    monkeypatch.setenv("LEGATO_NOTEBOOK_OUT", str(tmp_path / "runs"))
    monkeypatch.setenv("LEGATO_NOTEBOOK_QUICK", "1")
    nb = nbformat.read(ROOT / "notebooks" / name, as_version=4)
    NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
