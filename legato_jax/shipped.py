"""What ships with legato_jax (the ammonia dataset and split, the trained models, the model and
training configs), found the same way from a checkout and from an installed wheel, and paths
named in configs resolved against the config file.

In a checkout they are the repository's `data/`, `models/` and `configs/`; a wheel carries the
same folders as `legato_jax/shipped/{data,models,configs}` (pyproject.toml maps them in).
"""

from __future__ import annotations

from pathlib import Path

FOLDERS = ("data", "models", "configs")
# a bare name for each kind of file -> its place among the shipped files
NAMED = {
    "model": "models/{}/best.npz",
    "model config": "configs/model/{}.yaml",
    "training config": "configs/train/{}.yaml",
    "dataset": "data/{}.extxyz.xz",
    "split": "data/{}.split.json",
}


def shipped_root(folder: str) -> Path | None:
    """The shipped `folder` ("data", "models" or "configs") of this installation, if present."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "shipped" / folder, here.parent / folder):
        if candidate.is_dir():
            return candidate
    return None


def shipped_file(ref: str | Path, kind: str | None = None) -> Path | None:
    """The shipped file a reference names: a repository path (`data/ammonia.extxyz.xz`,
    `models/legato/best.npz`, `configs/train/legato.yaml`) or a bare name of `kind`
    (`legato` as a model, `allegro-cpu` as a model config, `ammonia` as a dataset)."""
    ref = Path(ref)
    if ref.is_absolute():
        return None
    if len(ref.parts) == 1 and not ref.suffix and kind in NAMED:
        ref = Path(NAMED[kind].format(ref.name))
    if len(ref.parts) < 2 or ref.parts[0] not in FOLDERS:
        return None
    root = shipped_root(ref.parts[0])
    return None if root is None else root.joinpath(*ref.parts[1:])


def locate(ref: str | Path, kind: str | None = None, base: str | Path | None = None) -> Path:
    """Where `ref` is: relative to `base` (the folder of the config that names it), then as given
    (relative to the working folder), then among the shipped files. A reference found nowhere
    comes back as given, for the caller's own "no such file" error."""
    ref = Path(ref)
    candidates = []
    if base is not None and not ref.is_absolute():
        candidates.append(Path(base) / ref)
    candidates.append(ref)
    shipped = shipped_file(ref, kind)
    if shipped is not None:
        candidates.append(shipped)
    for candidate in candidates:
        if candidate.exists():
            return candidate
    return ref


def portable(path: str | Path) -> str:
    """A path to store in a saved config: a shipped file as its repository path (valid on any
    installation), anything else absolute."""
    path = Path(path).resolve()
    for folder in FOLDERS:
        root = shipped_root(folder)
        if root is not None and path.is_relative_to(root.resolve()):
            return str(Path(folder) / path.relative_to(root.resolve()))
    return str(path)


def missing_hint(ref: str | Path, kind: str | None = None) -> str:
    """For a "no such file" error: a bare name of `kind` is neither a file nor a shipped one; a
    repository path (`data/...`, `models/...`) names a shipped file this installation lacks."""
    ref = Path(ref)
    if len(ref.parts) == 1 and not ref.suffix and kind in NAMED:
        return f" (not a file here, nor a shipped {kind} of this installation)"
    if ref.is_absolute() or not (ref.parts and ref.parts[0] in FOLDERS):
        return ""
    return (" (a shipped file, missing from this installation: install legato_jax from its wheel or "
            "`pip install .` of a checkout, or run from the checkout's root)")
