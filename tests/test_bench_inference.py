"""`legato bench inference` on a tiny model: our rows (time, FLOPs, % of peak, buffers per edge),
the peer-defaults model beside the config's, and, where nequip-allegro is importable, the peer
eager and exported agreeing on forces."""

import json

import pytest

from legato_jax.bench.inference import nequip_available, peer_default_kwargs, peer_defaults_config, peer_kwargs
from legato_jax.cli.main import main
from legato_jax.model.config import AllegroConfig

TINY = "configs/model/allegro-tiny.yaml"


def test_inference_rows_and_peer_defaults(tmp_path, capsys):
    out = tmp_path / "inference.json"
    assert main(["bench", "inference", "--config", TINY, "--sizes", "32", "--repeats", "1", "--no-peer",
                 "--peer-defaults", "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    assert [m["name"] for m in r["models"]] == ["config", "peer defaults"]
    for m in r["models"]:
        (row,) = m["rows"]
        L = row["legato"]
        assert L["atoms"] == 32 and L["edges"] > 0 and L["call_s"] > 0 and L["gflop"] > 0 and L["xla_peak_mib"] > 0
        assert "nequip" not in row
    assert r["models"][1]["model"]["num_layers"] == 2 and r["models"][1]["model"]["num_channels"] == 16


def test_peer_mapping_counts_hidden_layers():
    """Our MLP widths end with the output layer, the peer counts hidden layers: the CPU preset's
    linear latent map is depth 0, two widths are one hidden layer; the readout stays linear. The
    peer-defaults config maps to the peer's default widths, and the peer at its defaults gets no
    width settings at all."""
    tiny = AllegroConfig.from_yaml(TINY)
    assert peer_kwargs(tiny)["allegro_mlp_hidden_layers_depth"] == 0
    kw = peer_kwargs(peer_defaults_config(tiny))
    assert (kw["num_layers"], kw["num_scalar_features"], kw["num_tensor_features"]) == (2, 64, 16)
    assert (kw["allegro_mlp_hidden_layers_depth"], kw["allegro_mlp_hidden_layers_width"]) == (1, 64)
    assert (kw["readout_mlp_hidden_layers_depth"], kw["readout_mlp_hidden_layers_width"]) == (1, 32)
    assert kw["readout_mlp_nonlinearity"] is None
    assert (kw["scalar_embed_mlp_hidden_layers_depth"], kw["scalar_embed_mlp_hidden_layers_width"]) == (1, 64)
    assert kw["radial_chemical_embed_dim"] == 64 and kw["r_max"] == 3.5 and kw["l_max"] == 1
    defaults = peer_default_kwargs(tiny)
    assert defaults["r_max"] == 3.5 and not any("mlp" in k or "features" in k for k in defaults)


@pytest.mark.slow
@pytest.mark.skipif(not nequip_available(), reason="the peer (torch, nequip, nequip-allegro) is optional")
def test_peer_eager_and_aoti(tmp_path):
    out = tmp_path / "inference.json"
    assert main(["bench", "inference", "--config", TINY, "--sizes", "32", "64", "--repeats", "1",
                 "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["models"][0]["rows"]
    for row in rows:
        P = row["nequip"]
        assert P["call_s"] > 0 and P["aoti_call_s"] > 0 and P["gflop"] > 0 and P["aoti_force_diff"] < 1e-4
    assert "aoti_export_s" in rows[0]["nequip"] and "aoti_export_s" not in rows[1]["nequip"]  # one export serves every size
