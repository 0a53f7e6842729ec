"""Every package face names only what exists, and no module imports another module's private name."""

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FACES = ["legato_jax.data", "legato_jax.model", "legato_jax.train", "legato_jax.md", "legato_jax.calculators",
         "legato_jax.experiments", "legato_jax.parallel", "legato_jax.bench"]


@pytest.mark.parametrize("face", FACES)
def test_every_name_of_a_face_resolves(face):
    module = importlib.import_module(face)
    missing = [name for name in module.__all__ if getattr(module, name, None) is None]
    assert not missing, f"{face}.__all__ names {missing}, which do not resolve"


def test_no_module_imports_a_private_name_of_another():
    crossings = []
    for path in sorted([*ROOT.glob("legato_jax/**/*.py"), *ROOT.glob("scripts/*.py"), *ROOT.glob("tests/**/*.py")]):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("legato_jax"):
                crossings += [f"{path.relative_to(ROOT)}: {a.name} from {node.module}"
                              for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
    assert not crossings, "private names imported across modules:\n" + "\n".join(crossings)
