"""Argument types that refuse impossible values while the command line is read, so that a zero
size or interval is one usage line instead of an error deep inside a run."""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    value = _number(int, text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def nonnegative_int(text: str) -> int:
    value = _number(int, text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def positive_float(text: str) -> float:
    value = _number(float, text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def nonnegative_float(text: str) -> float:
    value = _number(float, text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def _number(kind: type, text: str):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {'an integer' if kind is int else 'a number'}, got {text!r}") from None
    if kind is float and value != value:
        raise argparse.ArgumentTypeError(f"must be a number, got {text}")
    return value


STDOUT = "-"


def add_json_option(p: argparse.ArgumentParser, what: str) -> None:
    """`--json` alone prints `what` as JSON (instead of text); `--json PATH` writes it there too."""
    p.add_argument("--json", nargs="?", const=STDOUT, metavar="PATH",
                   help=f"{what} as JSON: printed instead of text, or written to PATH")


def check_json_target(args: argparse.Namespace) -> None:
    """Refuse an unwritable `--json PATH` before any work."""
    from legato_jax.outputs import writable

    if args.json not in (None, STDOUT):
        writable(args.json, "--json")


def emit(args: argparse.Namespace, obj, text: str | None = None) -> None:
    """The result: JSON on stdout (`--json`), or `text` on stdout and JSON in the file of
    `--json PATH`; NaN becomes null."""
    import sys

    from legato_jax.outputs import atomic_write_text, json_text

    if args.json == STDOUT:
        print(json_text(obj), end="", flush=True)
        return
    if text is not None:
        print(text, flush=True)
    if args.json is not None:
        atomic_write_text(args.json, json_text(obj))
        print(f"wrote {args.json}", file=sys.stderr)
