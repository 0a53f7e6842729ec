"""Serve a model to i-PI over its socket protocol (ASE's `SocketClient` speaks it and converts
i-PI's bohr/hartree to Å/eV): i-PI then drives PIMD, replica exchange or any of its methods with
our energies, forces and virial."""

from __future__ import annotations

import socket
import time

from ase import Atoms
from ase.calculators.socketio import IPIProtocol, SocketClient, actualunixsocketname

from legato_jax.errors import ConfigError


class PathSocketClient(SocketClient):
    """ASE's client on a UNIX socket at any path (ASE's own looks only in /tmp/ipi_NAME; i-PI's
    `sockets_prefix` can put the socket anywhere)."""

    def __init__(self, path: str, timeout: float | None = None, log=None) -> None:
        from ase.parallel import world

        self.comm = world
        if world.size > 1:
            raise ConfigError("legato ipi runs as one process (the model is not MPI-parallel); drop mpirun")
        sock = socket.socket(socket.AF_UNIX)
        try:
            sock.connect(path)
        except OSError:
            sock.close()
            raise
        sock.settimeout(timeout)
        self.host, self.port, self.unixsocket = None, None, path
        self.protocol = IPIProtocol(sock, txt=log)
        self.log = self.protocol.log
        self.closed = False
        self.bead_index = 0
        self.bead_initbytes = b""
        self.state = "READY"


def socket_path(unix: str) -> str:
    """A name as i-PI's default location (/tmp/ipi_NAME), a path (with a /) as it is."""
    return unix if "/" in unix else actualunixsocketname(unix)


def connect(unix: str | None = None, host: str | None = None, port: int | None = None, wait_s: float = 60.0,
            timeout: float | None = None) -> SocketClient:
    """A client connected to a running i-PI server, retried for `wait_s` seconds while i-PI starts."""
    if (unix is None) == (host is None and port is None):
        raise ConfigError("give either --unix NAME (or a socket path) or --host H --port P")
    deadline = time.monotonic() + wait_s
    while True:
        try:
            if unix is not None:
                return PathSocketClient(socket_path(unix), timeout=timeout)
            return SocketClient(host=host or "localhost", port=port, timeout=timeout)
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            if time.monotonic() > deadline:
                where = socket_path(unix) if unix is not None else f"{host}:{port}"
                raise ConfigError(f"no i-PI server at {where} after {wait_s:g} s ({exc.strerror}); start i-pi "
                                  "first, with the same address") from None
            time.sleep(0.2)


def serve(atoms: Atoms, calculator, unix: str | None = None, host: str | None = None, port: int | None = None,
          wait_s: float = 60.0) -> int:
    """Answer i-PI's force requests for `atoms` (species and order as in i-PI's initial structure)
    until i-PI ends the run; returns the number of evaluations."""
    client = connect(unix, host, port, wait_s)
    atoms = atoms.copy()
    atoms.calc = calculator
    count = 0
    try:
        for _ in client.irun(atoms, use_stress=bool(atoms.pbc.all())):
            count += 1
    finally:
        client.close()
    return count
