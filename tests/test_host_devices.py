"""`legato md --domains` on CPU makes its own host devices: from a fresh process without
XLA_FLAGS, before anything (jax-md's import included) starts JAX."""

import os
import subprocess
import sys

from legato_jax.cli.main import host_devices_for


def test_device_counts_are_read_from_the_arguments():
    assert host_devices_for(["md", "--model", "m.npz", "--domains", "2", "2", "1"]) == 4
    assert host_devices_for(["bench", "scaling", "--domains", "1", "2", "8"]) == 8
    assert host_devices_for(["bench", "scaling", "--backend", "mpi", "--domains", "1", "2"]) is None
    assert host_devices_for(["md", "--domains", "0", "1", "1"]) is None  # the real parser refuses it
    assert host_devices_for(["train", "c.yaml"]) is None


def test_legato_md_with_domains_from_a_fresh_process(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    proc = subprocess.run(
        [sys.executable, "-m", "legato_jax.cli.main", "md", "--model", "tests/data/ammonia-tiny.npz", "--ammonia", "16",
         "--steps", "2", "--log-every", "2", "--ensemble", "nve", "--temperature", "200", "--dt", "1",
         "--domains", "2", "1", "1", "--out", str(tmp_path / "md")],
        capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "2x1x1 domains (mesh)" in proc.stdout
