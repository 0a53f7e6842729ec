"""Training on a user's own data: a config in its own folder (paths against it), MACE-style keys
and options, species taken from the data, an automatic split, isolated-atom energies (E0s)."""

import json

import numpy as np
import pytest
import yaml
from ase.io import write

from legato_jax.cli.main import main as cli
from legato_jax.errors import ConfigError
from legato_jax.train.config import TrainConfig, load_train_config
from legato_jax.train.statistics import fit_model_stats
from legato_jax.train.trainer import load_datasets
from tests.conftest import labelled, random_cell_atoms

TINY = dict(r_max=3.0, num_layers=1, l_max=1, num_channels=4, two_body_mlp=[8, 16], latent_mlp=[16],
            edge_energy_mlp=[8], num_bessel=4, polynomial_p=6)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A user's folder: frames of C and O with MACE's REF_ keys, a model YAML without species,
    and a training YAML naming both by paths relative to itself."""
    d = tmp_path_factory.mktemp("project")
    rng = np.random.default_rng(3)
    images = []
    for _ in range(20):
        a = labelled(random_cell_atoms(rng, n=8, min_len=4.0, max_len=5.0, symbols="CO"), stress=False, sigma=1.5)
        ref = a.copy()
        ref.info["REF_energy"] = a.get_potential_energy()
        ref.arrays["REF_forces"] = a.get_forces()
        images.append(ref)
    (d / "data").mkdir()
    write(d / "data" / "co.extxyz", images, format="extxyz")
    (d / "model.yaml").write_text(yaml.safe_dump(TINY))
    (d / "train.yaml").write_text(yaml.safe_dump({
        "name": "co", "out_dir": str(d / "runs"), "data": "data/co.extxyz", "model": "model.yaml",
        "energy_key": "REF_energy", "forces_key": "REF_forces", "stress_weight": 0.0, "batch_size": 4,
        "max_epochs": 1, "e0s": {"C": -1.5, "O": -2.0, "Ne": 0.0}}))
    return d


def test_a_config_in_its_own_folder_resolves_its_files_from_anywhere(project, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # not the project folder
    assert cli(["train", str(project / "train.yaml"), "--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["data"] == str(project / "data" / "co.extxyz")
    assert printed["model"]["species"] is None and printed["model"]["num_channels"] == 4
    assert printed["split"] is None and printed["split_fractions"] == [0.8, 0.1, 0.1]
    # an override's file resolves against the working folder, not the config's
    (tmp_path / "other.extxyz").write_text((project / "data" / "co.extxyz").read_text())
    cfg = load_train_config(project / "train.yaml", ["data=other.extxyz"])
    assert cfg.data == str(tmp_path / "other.extxyz")


def test_species_from_the_data_an_automatic_split_and_given_e0s(project, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli(["train", str(project / "train.yaml"), "--json"]) == 0
    run = project / "runs" / "co"
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["model"]["species"] == ["C", "O"]  # by atomic number
    split = json.loads((run / "split.json").read_text())
    assert sorted(split["train"] + split["validation"] + split["test"]) == list(range(20))
    assert len(split["train"]) == 16 and split["meta"]["fractions"] == [0.8, 0.1, 0.1]
    assert json.loads((run / "stats.json").read_text())["species_shift"] == [-1.5, -2.0]
    # the run resumes with the species and split it started with
    assert cli(["train", "--resume", str(run), "--set", "max_epochs=2"]) == 0
    assert yaml.safe_load((run / "config.yaml").read_text())["model"]["species"] == ["C", "O"]


def test_e0s_average_is_the_per_element_least_squares_fit(project):
    cfg = load_train_config(project / "train.yaml", ["e0s=average"])
    data = load_datasets(cfg)
    species = data.type_map.symbols
    fitted = np.array(fit_model_stats(data.train, species, e0s="average").species_shift)
    counts = np.stack([np.bincount(g.species, minlength=2) for g in data.train]).astype(float)
    energy = np.array([g.energy for g in data.train])
    np.testing.assert_allclose(counts @ fitted, counts @ np.linalg.lstsq(counts, energy, rcond=None)[0], rtol=1e-6)
    with pytest.raises(ConfigError, match=r"no energy for \['O'\]"):
        fit_model_stats(data.train, species, e0s={"C": -1.0})
    with pytest.raises(ConfigError, match="'e0s' must be 'average'"):
        TrainConfig(e0s="mean")


def test_mace_style_underscore_options(project, capsys):
    data = str(project / "data" / "co.extxyz")
    assert cli(["data", "inspect", data, "--energy_key", "REF_energy", "--forces_key=REF_forces"]) == 0
    assert "frames" in capsys.readouterr().out
    assert cli(["data", "inspect", data, "--energy-key", "nope"]) == 2
    assert "nope" in capsys.readouterr().err


def test_several_data_files_train_together_each_split_its_own_way(project, tmp_path, monkeypatch, capsys):
    """A list of data files (e.g. a dataset and frames added later): each file split by its own
    split file or automatically, the subsets the unions, frames counted through the files in order."""
    from ase.io import read

    from legato_jax.data.split import write_split

    images = read(project / "data" / "co.extxyz", ":")
    write(tmp_path / "more.extxyz", images[:10], format="extxyz")
    own = {"train": [0, 1, 2, 3, 4, 5], "validation": [6, 7], "test": [8, 9]}
    write_split(tmp_path / "more.split.json", own, {"file": "more.extxyz"})
    monkeypatch.chdir(tmp_path)
    cfg = load_train_config(project / "train.yaml", ["data=[more.extxyz, %s]" % (project / "data" / "co.extxyz"),
                                                     "split=[more.split.json, null]"])
    assert cfg.data_files == (str(tmp_path / "more.extxyz"), str(project / "data" / "co.extxyz"))
    data = load_datasets(cfg)
    assert data.split["train"][:6] == own["train"] and data.split["test"][:2] == own["test"]
    assert sorted(sum(data.split.values(), [])) == list(range(30))
    assert len(data.train) == 6 + 16 and len(data.validation) == 2 + 2
    np.testing.assert_allclose(data.train[0].positions, images[0].positions)
    assert cli(["train", str(project / "train.yaml"), "--set", "data=[more.extxyz, more.extxyz]",
                "--set", "split=[more.split.json]", "--print-config"]) == 2
    assert "'split' lists 1 files for 2 data files" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="'split' is one file for 2 data files"):
        TrainConfig(data=("a.extxyz", "b.extxyz"), split="a.split.json")
    printed = yaml.safe_load(yaml.safe_dump(cfg.to_dict()))
    assert printed["data"] == list(cfg.data_files) and printed["split"][1] is None
