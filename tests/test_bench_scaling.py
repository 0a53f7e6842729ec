"""`legato bench scaling` on tiny settings: one row per P with every timing and the ghost count."""

import json

import pytest

from legato_jax.cli.main import main
from tests.test_md_run import TINY


def test_weak_scaling_table_over_host_devices(tmp_path, capsys):
    out = tmp_path / "scaling.json"
    assert main(["bench", "scaling", "--model", str(TINY), "--atoms-per-domain", "108", "--domains", "1", "2",
                 "--steps", "4", "--repeats", "1", "--json", str(out)]) == 0
    table = capsys.readouterr().out
    assert "| 2 (2x1x1) | 216 |" in table and "efficiency" in table
    rows = json.loads(out.read_text())["rows"]
    assert [r["P"] for r in rows] == [1, 2]
    for r in rows:
        assert r["step_s"] > 0 and r["force_s"] > 0 and r["nl_s"] > 0 and r["halo_s"] > 0
        assert r["ghost_fraction"] > 0 and r["halo_bytes_per_step"] > 0
    # the same per-domain box in both runs: the same ghosts per domain
    assert rows[1]["ghosts_per_domain"] == pytest.approx(rows[0]["ghosts_per_domain"], rel=0.05)
