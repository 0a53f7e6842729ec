"""`legato bench train` on tiny settings: a row per batch size with Adam and SAM timings, the
step's parts and its FLOP rate against the matmul peak."""

import json

import pytest

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
        assert all(v > 0 for v in w["parts"].values())  # the parts' differences are noise at this size


SMALL = ["data=tests/data/ammonia-small.extxyz", "split=tests/data/ammonia-small.split.json",
         "model=configs/model/allegro-tiny.yaml"]


def test_peer_config_carries_our_recipe_and_refuses_what_the_peer_cannot_match(tmp_path):
    from legato_jax.bench.peer_train import peer_config
    from legato_jax.errors import ConfigError
    from legato_jax.train.config import load_train_config

    cfg = load_train_config("configs/train/allegro.yaml", SMALL).with_species(("H", "N"))
    files = {k: tmp_path / f"{k}.extxyz" for k in ("train", "val", "test")}
    c = peer_config(cfg, files, 1.5, tmp_path)
    tm, data, model = c["training_module"], c["data"], c["training_module"]["model"]
    assert tm["optimizer"]["lr"] == cfg.lr and tm["ema_decay"] == cfg.ema_decay
    assert tm["loss"]["per_atom_energy"] and tm["loss"]["coeffs"] == {"total_energy": 1.0, "forces": 1.0}
    assert tm["lr_scheduler"]["scheduler"]["patience"] == cfg.plateau_patience
    assert data["train_dataloader"]["batch_size"] == cfg.batch_size and data["train_dataloader"]["shuffle"]
    assert data["test_file_path"] == str(files["test"]) and c["trainer"]["max_time"] == "00:00:01:30"
    m = cfg.model_config()
    assert (model["r_max"], model["l_max"], model["num_layers"], model["num_tensor_features"],
            model["radial_chemical_embed"]["num_bessels"]) == (
        m.r_max, m.l_max, m.num_layers, m.num_channels, m.num_bessel)
    assert model["type_names"] == ["H", "N"]
    with pytest.raises(ConfigError, match="rho 0"):
        peer_config(load_train_config("configs/train/legato.yaml", SMALL).with_species(("H", "N")), files, 1, tmp_path)
    with pytest.raises(ConfigError, match="stress_weight 0"):
        peer_config(load_train_config("configs/train/allegro.yaml", SMALL + ["stress_weight=1"]).with_species(("H", "N")),
                    files, 1, tmp_path)


@pytest.mark.slow
def test_peer_training_side_by_side_end_to_end(tmp_path, capsys):
    pytest.importorskip("nequip")
    pytest.importorskip("allegro")
    out = tmp_path / "peer.json"
    assert main(["bench", "train", "--peer", "--configs", "configs/train/allegro.yaml", *sum((["--set", s] for s in SMALL), []),
                 "--minutes", "1.5", "--out", str(tmp_path / "runs"), "--json", str(out)]) == 0
    assert "| test F MAE (meV/Å) |" in capsys.readouterr().out
    r = json.loads(out.read_text())
    for side in ("ours", "peer"):
        assert r[side]["epochs"] >= 1 and r[side]["steps"] >= 1 and 0 < r[side]["test_f_mae"] < 1e4
    assert r["params"]["ours"] > 0 and r["params"]["peer"] > 0
