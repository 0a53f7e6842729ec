"""Entry point of `legato`: subcommands register themselves; user errors print one line."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from legato_jax import __version__
from legato_jax.errors import LegatoError


class DefaultsFormatter(argparse.HelpFormatter):
    """Help that shows every option's default (unless None, off, or already told in the text)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        value = action.default
        if (not action.option_strings or value is None or value is False or value == argparse.SUPPRESS
                or "default" in text
                or isinstance(action, argparse._HelpAction)):
            return text
        if isinstance(value, (list, tuple)):
            value = " ".join(map(str, value)) or "none"
        return f"{text} (default: {value})".strip().replace("%", "%%") if "%" not in text else text


def dashed(token: str) -> str:
    """`--energy_key=x` -> `--energy-key=x`: the underscore spellings MACE and nequip users type."""
    if not token.startswith("--") or len(token) < 3:
        return token
    name, sep, value = token.partition("=")
    return name.replace("_", "-") + sep + value


class OneLineParser(argparse.ArgumentParser):
    """argparse with usage errors as one line (the usage stays in `-h`) and defaults in `-h`;
    subcommands inherit it."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", DefaultsFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} -h)\n")


def build_parser() -> argparse.ArgumentParser:
    # the subcommands import jax-md, whose import starts JAX's backends: see host_devices_for
    from legato_jax.cli import analyze as analyze_cmd
    from legato_jax.cli import bench as bench_cmd
    from legato_jax.cli import data as data_cmd
    from legato_jax.cli import demo as demo_cmd
    from legato_jax.cli import ipi as ipi_cmd
    from legato_jax.cli import md as md_cmd
    from legato_jax.cli import model as model_cmd
    from legato_jax.cli import pimd as pimd_cmd
    from legato_jax.cli import rho_scan as rho_scan_cmd
    from legato_jax.cli import spectrum as spectrum_cmd
    from legato_jax.cli import train as train_cmd
    from legato_jax.cli import ttf as ttf_cmd

    parser = OneLineParser(
        prog="legato", description="Allegro / Allegro-Legato potentials and MD in JAX."
    )
    parser.add_argument("--version", action="version", version=f"legato_jax {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    data_cmd.register(sub)
    train_cmd.register(sub)
    model_cmd.register(sub)
    md_cmd.register(sub)
    pimd_cmd.register(sub)
    ipi_cmd.register(sub)
    analyze_cmd.register(sub)
    spectrum_cmd.register(sub)
    ttf_cmd.register(sub)
    rho_scan_cmd.register(sub)
    demo_cmd.register(sub)
    bench_cmd.register(sub)
    return parser


def host_devices_for(argv: list[str]) -> int | None:
    """The CPU host devices `legato md --domains PX PY PZ` (their product) or `legato bench
    scaling --domains P ...` (the largest P) needs, read from the arguments before anything
    starts JAX; None for other commands or arguments the real parser will refuse."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--domains", type=int, nargs="+")
    pre.add_argument("--backend")
    try:
        known, _ = pre.parse_known_args(argv[1:])
    except SystemExit:
        return None
    if not known.domains or min(known.domains) < 1:
        return None
    if argv[:1] == ["md"] and len(known.domains) == 3:
        return known.domains[0] * known.domains[1] * known.domains[2]
    if argv[:2] == ["bench", "scaling"] and known.backend != "mpi":
        return max(known.domains)
    return None


def os_error_line(exc: OSError) -> str:
    """An OS error as one line naming the file and what to do."""
    where = f"{exc.filename}: " if exc.filename else ""
    what = exc.strerror or str(exc)
    hint = {FileNotFoundError: "check the path", IsADirectoryError: "give a file, not a folder",
            NotADirectoryError: "a file stands where a folder is needed", PermissionError: "choose a writable location",
            FileExistsError: "remove it or choose another name"}.get(type(exc), "check the path and the disk")
    return f"{where}{what}; {hint}"


def main(argv: list[str] | None = None) -> int:
    argv = [dashed(a) for a in (sys.argv[1:] if argv is None else argv)]
    count = host_devices_for(argv)
    if count is not None:
        from legato_jax.parallel.devices import request_host_devices

        request_host_devices(count)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # -h, --version, or a usage error already printed as one line
        return exc.code if isinstance(exc.code, int) else 2
    try:
        return int(args.func(args) or 0)
    except LegatoError as exc:
        kind = "stopped" if getattr(exc, "exit_status", 2) != 2 else "error"
        print(f"legato {args.command}: {kind}: {' '.join(str(exc).split())}", file=sys.stderr)
        return getattr(exc, "exit_status", 2)
    except OSError as exc:
        print(f"legato {args.command}: error: {os_error_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"legato {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
