"""Output files: checked writable before long work starts, and rewritten atomically, so that
neither a bad path nor a kill loses results."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

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


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write `text` to `path` through a temporary file and a rename: a kill leaves the old file or
    the new one, never a cut one."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "w", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
