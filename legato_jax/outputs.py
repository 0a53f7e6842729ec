"""Output files: checked writable before long work starts, and rewritten atomically, so that
neither a bad path nor a kill loses results."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

import numpy as np

from legato_jax.errors import ConfigError


def writable(path: str | Path, option: str) -> Path:
    """`path` as a file that can be written: its folder exists (made if missing) and accepts a
    new file. Call it when the options are read, before any work."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{option} {path}: is a folder; give a file name")
    folder(path.parent, option)
    return path


def folder(path: str | Path, option: str) -> Path:
    """`path` as a folder that exists (made if missing) and accepts new files."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".legato-probe-"):
            pass
    except FileExistsError:
        raise ConfigError(f"{option} {path}: a file stands where a folder is needed; choose another path") from None
    except NotADirectoryError:
        raise ConfigError(f"{option} {path}: part of the path is a file, not a folder; choose another path") from None
    except OSError as exc:
        raise ConfigError(f"{option} {path}: cannot write there ({exc.strerror}); choose a writable folder") from None
    return path


def _atomic_write(path: str | Path, suffix: str, write) -> Path:
    """Call `write(tmp)` on a temporary file beside `path`, flush it to disk and rename it over
    `path`: a kill leaves the old file or the new one, never a cut one."""
    path = Path(path)
    tmp = path.with_name(path.name + suffix)
    try:
        write(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write `text` to `path` through a temporary file and a rename."""
    return _atomic_write(path, ".tmp", lambda tmp: Path(tmp).write_text(text, newline=""))


def atomic_write_npz(path: str | Path, arrays: dict, compressed: bool = False) -> Path:
    """Save `arrays` as an .npz at `path` through a temporary file and a rename; `compressed` uses
    zip deflation (smaller, slower)."""
    return _atomic_write(path, ".tmp.npz", lambda tmp: (np.savez_compressed if compressed else np.savez)(tmp, **arrays))


def json_ready(obj):
    """`obj` with NaN and infinities as None (JSON's null; `json` would write the invalid `NaN`)
    and numpy scalars and arrays as Python numbers and lists."""
    if isinstance(obj, dict):
        return {str(k): json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_ready(v) for v in obj]
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):  # numpy scalars and arrays
        return json_ready(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def json_text(obj, indent: int | None = 1) -> str:
    """Strict JSON of `obj` (see `json_ready`), newline-terminated."""
    return json.dumps(json_ready(obj), indent=indent, allow_nan=False) + "\n"
