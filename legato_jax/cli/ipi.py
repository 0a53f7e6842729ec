"""`legato ipi`: serve a model's energies, forces and virial to an i-PI server (i-PI drives the
simulation: PIMD, replica exchange, ...; example input in configs/ipi/)."""

from __future__ import annotations

import sys

from legato_jax.cli.md import add_structure_arguments, build_structure
from legato_jax.cli.options import positive_float, positive_int
from legato_jax.errors import ConfigError


def register(sub) -> None:
    p = sub.add_parser("ipi", help="serve a model to i-PI over its socket protocol (i-PI runs the simulation)")
    p.add_argument("--model", default="legato", help="model file (.npz), run directory, or a shipped model's name")
    add_structure_arguments(p, restart=False)
    address = p.add_mutually_exclusive_group(required=True)
    address.add_argument("--unix", metavar="NAME",
                         help="UNIX socket: i-PI's <address> NAME (at /tmp/ipi_NAME), or a socket path (with a /) "
                              "for a sockets_prefix elsewhere")
    address.add_argument("--host", help="TCP: the i-PI server's host (with --port)")
    p.add_argument("--port", type=positive_int, help="TCP port of the i-PI server (i-PI's <port>)")
    p.add_argument("--wait", type=positive_float, default=60.0, help="seconds to wait for the server to appear")
    p.set_defaults(func=main, restart=None)


def main(args) -> int:
    from legato_jax.calculators import LegatoCalculator
    from legato_jax.calculators.ipi import serve
    from legato_jax.model.io import resolve_model

    if args.host is not None and args.port is None:
        raise ConfigError("--host needs --port (i-PI's <port> in its ffsocket)")
    if args.unix is not None and args.port is not None:
        raise ConfigError("--port goes with --host (TCP); a UNIX socket (--unix) has no port")
    if args.structure is None and args.ammonia is None:
        raise ConfigError("give --structure FILE: the structure i-PI starts from (species and atom order must match)")
    atoms, _ = build_structure(args)
    potential, params, _ = resolve_model(args.model)
    count = serve(atoms, LegatoCalculator(potential, params), unix=args.unix, host=args.host, port=args.port,
                  wait_s=args.wait)
    print(f"legato ipi: served {count} force evaluations of {len(atoms)} atoms; i-PI ended the run", file=sys.stderr)
    return 0
