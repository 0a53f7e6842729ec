"""Host devices for domains on CPU, requested before JAX starts (no JAX import here)."""

from __future__ import annotations

import os


def request_host_devices(count: int) -> None:
    """On CPU, one host device per domain: sets XLA's host-device count unless the user did. It
    takes effect only if no JAX backend has started yet (else domain_mesh says what to set)."""
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={count}".strip()
