"""`legato bench train` on tiny settings: a row per batch size with Adam and SAM timings, the
step's parts and its FLOP rate against the matmul peak."""

import json

from legato_jax.cli.main import main


def test_training_benchmark_rows(tmp_path, capsys):
    out = tmp_path / "train.json"
    assert main(["bench", "train", "--configs", "configs/train/allegro.yaml",
                 "--set", "data=tests/data/ammonia-small.extxyz", "--set", "split=tests/data/ammonia-small.split.json",
                 "--set", "model=configs/model/allegro-tiny.yaml", "--batch-sizes", "2", "4", "--frames", "8",
                 "--repeats", "2", "--json", str(out)]) == 0
    table = capsys.readouterr().out
    assert "| allegro.yaml | 2 |" in table and "% of matmul peak" in table
    r = json.loads(out.read_text())
    assert r["matmul_peak_gflops"] > 0 and [w["batch_size"] for w in r["rows"]] == [2, 4]
    for w in r["rows"]:
        assert w["adam"]["step_s"] > 0 and w["sam"]["step_s"] > 0 and w["adam"]["gflop"] > 0
        assert w["sam"]["gflop"] > w["adam"]["gflop"]  # a second gradient per step
        assert all(v > -1e-3 for v in w["parts"].values()) and w["parts"]["forward_s"] > 0
