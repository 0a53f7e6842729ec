"""Training: the loss goes down, resume is exact, bad input and divergence are caught."""

import csv
import dataclasses

import jax
import numpy as np
import optax
import pytest
import yaml
from ase import Atoms
from ase.io import write

from legato_jax.data.split import block_split, write_split
from legato_jax.errors import ConfigError, DataError
from legato_jax.train.checkpoint import load_checkpoint
from legato_jax.train.config import TrainConfig, load_train_config
from legato_jax.train.trainer import Trainer, TrainingDiverged, resume
from tests.conftest import labelled

TINY = dict(r_max=3.5, num_layers=2, l_max=1, num_channels=4, two_body_mlp=[8, 16], latent_mlp=[16],
            edge_energy_mlp=[8], num_bessel=4, polynomial_p=6)


@pytest.fixture(scope="module")
def toy_data(tmp_path_factory):
    rng = np.random.default_rng(5)
    d = tmp_path_factory.mktemp("toy")
    lattice = Atoms("HN" * 6, scaled_positions=[(i / 2, j / 2, k / 3) for i in range(2) for j in range(2) for k in range(3)],
                    cell=[3.4, 3.4, 5.1], pbc=True)
    images = []
    for _ in range(24):
        a = lattice.copy()
        a.positions += rng.normal(scale=0.12, size=a.positions.shape)
        images.append(labelled(a, sigma=1.2))
    write(d / "toy.extxyz", images, format="extxyz")
    write_split(d / "toy.split.json", block_split(len(images), (0.75, 0.25, 0.0), seed=0, block=2), {})
    return d


def config(toy_data, tmp_path, **over) -> TrainConfig:
    base = dict(name="run", out_dir=str(tmp_path), data=str(toy_data / "toy.extxyz"),
                split=str(toy_data / "toy.split.json"), model=TINY, batch_size=2, eval_batch_size=6,
                lr=0.01, rho=0.01, max_epochs=4, plateau_patience=2)
    return TrainConfig.from_dict({**base, **over})


def test_training_lowers_validation_loss_and_writes_the_run(toy_data, tmp_path):
    trainer = Trainer(config(toy_data, tmp_path), progress=False)
    state = trainer.fit()
    run = tmp_path / "run"
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    first_val = trainer.evaluate(trainer.init_state().ema)["loss"]
    assert float(rows[-1]["val_loss"]) < 0.8 * first_val
    assert (run / "best.npz").exists() and (run / "config.yaml").exists()
    assert int(state.step) == 4 * trainer.steps_per_epoch


def test_resume_after_interruption_equals_uninterrupted_run(toy_data, tmp_path):
    whole = Trainer(config(toy_data, tmp_path, name="whole"), progress=False).fit()
    part = Trainer(config(toy_data, tmp_path, name="part"), progress=False)
    part.fit(epochs=2)
    (tmp_path / "part" / "checkpoint.msgpack.tmp").write_bytes(b"half-written")  # a kill mid-save
    trainer, state = resume(tmp_path / "part", progress=False)
    assert int(state.epoch) == 2
    done = trainer.fit(state)
    for a, b in zip(jax.tree_util.tree_leaves(whole.params), jax.tree_util.tree_leaves(done.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    for a, b in zip(jax.tree_util.tree_leaves(whole.ema), jax.tree_util.tree_leaves(done.ema)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    rows = list(csv.DictReader(open(tmp_path / "part" / "metrics.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]


def test_an_ended_run_trains_longer_with_resume_overrides(toy_data, tmp_path):
    Trainer(config(toy_data, tmp_path, name="short", max_epochs=2), progress=False).fit()
    with pytest.raises(ConfigError, match=r"--resume can only change \['max_minutes', 'max_epochs', 'early_stop_patience', 'lr_milestones'\], not \['lr'\]"):
        resume(tmp_path / "short", progress=False, overrides={"lr": 0.1})
    trainer, state = resume(tmp_path / "short", progress=False, overrides={"max_epochs": 3})
    assert int(trainer.fit(state).epoch) == 3
    assert yaml.safe_load((tmp_path / "short" / "config.yaml").read_text())["max_epochs"] == 3


def test_lr_milestones_scale_the_step_and_anneal_an_ended_run(toy_data, tmp_path):
    plain = Trainer(config(toy_data, tmp_path, name="plain", plateau_patience=50), progress=False)
    annealed = Trainer(config(toy_data, tmp_path, name="annealed", plateau_patience=50, lr_milestones=[1, 3]),
                       progress=False)
    batch = next(iter(plain.train_loader))
    state = plain.init_state()
    for epoch, factor in [(0, 1.0), (1, 0.5), (2, 0.5), (3, 0.25)]:
        at = state._replace(step=state.step + epoch * plain.steps_per_epoch)
        ref, _, _ = plain.jit_step(at, batch)
        new, _, _ = annealed.jit_step(at, batch)
        for p0, a, b in zip(*(jax.tree_util.tree_leaves(s.params) for s in (at, ref, new))):
            np.testing.assert_allclose(np.asarray(b - p0), factor * np.asarray(a - p0), rtol=1e-4, atol=1e-6)
    Trainer(config(toy_data, tmp_path, name="ended", plateau_patience=50, max_epochs=2), progress=False).fit()
    trainer, state = resume(tmp_path / "ended", progress=False, overrides={"max_epochs": 4, "lr_milestones": [2, 3]})
    trainer.fit(state)
    rows = list(csv.DictReader(open(tmp_path / "ended" / "metrics.csv")))
    assert [float(r["lr"]) for r in rows] == pytest.approx([0.01, 0.01, 0.005, 0.0025])
    with pytest.raises(ConfigError, match="lr_milestones"):
        config(toy_data, tmp_path, lr_milestones=[3, 2])


def test_sam_step_on_the_tiny_model_matches_a_hand_computed_step(toy_data, tmp_path):
    trainer = Trainer(config(toy_data, tmp_path, rho=0.05, lr=1e-3), progress=False)
    state = trainer.init_state()
    batch = next(iter(trainer.train_loader))
    new, _, _ = trainer.jit_step(state, batch)
    grad = jax.jit(jax.grad(trainer.loss))
    g = grad(state.params, batch)
    norm = optax.tree.norm(g)
    w_adv = jax.tree_util.tree_map(lambda w, d: w + 0.05 * d / (norm + 1e-12), state.params, g)
    g_adv = grad(w_adv, batch)
    adam = optax.adam(1e-3)
    upd, _ = adam.update(g_adv, adam.init(state.params), state.params)
    expected = optax.apply_updates(state.params, upd)  # plateau scale is 1 on the first step
    for a, b in zip(jax.tree_util.tree_leaves(expected), jax.tree_util.tree_leaves(new.params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7)


def test_non_finite_loss_stops_with_step_and_batch_and_keeps_checkpoint(toy_data, tmp_path):
    trainer = Trainer(config(toy_data, tmp_path), progress=False)
    real_step = trainer.jit_step
    calls = {"n": 0}

    def failing(state, batch):
        calls["n"] += 1
        new, loss, finite = real_step(state, batch)
        return new, loss, finite & (calls["n"] < 3)

    trainer.jit_step = failing
    with pytest.raises(TrainingDiverged, match=r"step 3 \(epoch 1, batch 2\).*checkpoint.msgpack"):
        trainer.fit()
    state = load_checkpoint(tmp_path / "run" / "checkpoint.msgpack", trainer.init_state())
    assert int(state.step) == 0 and all(np.all(np.isfinite(x)) for x in jax.tree_util.tree_leaves(state.params))


def test_bad_config_and_foreign_species_are_refused_before_training(toy_data, tmp_path):
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['learning_rate'\]; valid keys are \[.*'lr'"):
        TrainConfig.from_dict({"learning_rate": 1e-3})
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("name: x\n")
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['num_chanels'\]"):
        load_train_config(cfg_file, ["model.num_chanels=3"])
    with pytest.raises(DataError, match=r"frame 0: unknown species \['H'\]; the type map is \['N', 'O'\]"):
        Trainer(config(toy_data, tmp_path, model={**TINY, "species": ["N", "O"]}), progress=False)


def test_evaluate_and_sharpness_commands(toy_data, tmp_path, capsys):
    import json

    from legato_jax.cli.main import main

    cfg = config(toy_data, tmp_path, max_epochs=1)
    Trainer(cfg, progress=False).fit()
    run = str(tmp_path / "run")
    data, split = str(toy_data / "toy.extxyz"), str(toy_data / "toy.split.json")
    assert main(["evaluate", "--model", run, "--data", data, "--split", split, "--subset", "validation", "--json",
                 "--plot", str(tmp_path / "p.png")]) == 0
    m = json.loads(capsys.readouterr().out)
    assert m["frames"] == 6 and set(m["forces_per_species"]) == {"H", "N"} and "stress_mae_meV_per_A3" in m
    assert (tmp_path / "p.png").stat().st_size > 0
    assert main(["sharpness", "--model", run, "--data", data, "--split", split, "--draws", "4", "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["noise"]["draws"] == 4 and s["noise"]["mean_rise"] > 0 and s["sam"]["rise"] > 0
    assert main(["evaluate", "--model", str(tmp_path / "nothing"), "--data", data]) == 2


def test_nequip_early_stopping_ends_a_run_and_resumes_its_count(toy_data, tmp_path):
    # a delta no epoch can beat: the initial validation sets the reference, epochs 1 and 2 count
    cfg = config(toy_data, tmp_path, early_stop_rule="nequip", early_stop_delta=100.0, early_stop_patience=2)
    trainer = Trainer(cfg, progress=False)
    state = trainer.fit()
    assert int(state.epoch) == 2 and int(state.epochs_since_best) == 2
    assert "not reduced by more than 100" in trainer.stop_reason
    _, again = resume(tmp_path / "run", progress=False)
    assert float(again.stop_reference) == float(state.stop_reference) and int(again.epochs_since_best) == 2


def test_the_paper_configs_load_and_one_trains_a_tiny_epoch(toy_data, tmp_path):
    over = [f"out_dir={tmp_path}", f"data={toy_data / 'toy.extxyz'}", f"split={toy_data / 'toy.split.json'}",
            "max_epochs=1", "max_train_frames=4"]
    allegro, legato = (load_train_config(f"configs/train/{name}-paper.yaml", over) for name in ("allegro", "legato"))
    assert allegro.rho == 0.0 and legato.rho == 0.005
    assert dataclasses.replace(legato, rho=0.0, name=allegro.name) == allegro  # SAM is the only difference
    assert legato.model_config().num_layers == 3 and legato.stress_weight == 0.0 and legato.early_stop_rule == "nequip"
    trainer = Trainer(legato, progress=False)  # the paper's model and SAM: one step, one validation
    state = trainer.fit()
    assert int(state.epoch) == 1 and np.isfinite(float(state.val_loss))


def test_zero_stress_weight_keeps_stress_out_of_the_loss(toy_data, tmp_path):
    trainer = Trainer(config(toy_data, tmp_path, stress_weight=0.0), progress=False)
    params = trainer.init_state().params
    batch = next(iter(trainer.train_loader))
    graph, target = batch
    assert target.stress_mask.any()  # the frames carry stress labels
    other = batch._replace(targets=target._replace(stress=target.stress + 7.0))
    grad = jax.jit(jax.value_and_grad(trainer.loss))
    (a, ga), (b, gb) = grad(params, batch), grad(params, other)
    assert float(a) == float(b)
    for x, y in zip(jax.tree_util.tree_leaves(ga), jax.tree_util.tree_leaves(gb)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    stressed = Trainer(config(toy_data, tmp_path, stress_weight=1.0), progress=False)
    assert float(stressed.loss(params, other)) != float(stressed.loss(params, batch))


def test_init_from_starts_at_the_source_models_validation_loss(toy_data, tmp_path):
    source = Trainer(config(toy_data, tmp_path, name="source", max_epochs=2), progress=False)
    source.fit()
    from legato_jax.model.io import load_model

    _, params, _ = load_model(tmp_path / "source" / "best.npz")
    expected = source.evaluate(params)["loss"]
    tuned = Trainer(config(toy_data, tmp_path, name="tuned", init_from=str(tmp_path / "source" / "best.npz")),
                    progress=False)
    state = tuned.fit(epochs=0)
    assert float(state.val_loss) == pytest.approx(expected, rel=1e-6)
    refit = Trainer(config(toy_data, tmp_path, name="refit", init_from=str(tmp_path / "source"), init_stats="refit",
                           max_train_frames=6), progress=False)
    assert refit.potential.stats != tuned.potential.stats  # refitted on the config's data


def test_init_from_a_mismatched_model_is_one_line(toy_data, tmp_path, capsys):
    Trainer(config(toy_data, tmp_path, name="source", max_epochs=1), progress=False).fit()
    model = str(tmp_path / "source" / "best.npz")
    with pytest.raises(ConfigError, match=r"species \['H', 'N'\] differ from the training config's \['N', 'H'\]"):
        Trainer(config(toy_data, tmp_path, name="x", init_from=model, model={**TINY, "species": ["N", "H"]}),
                progress=False)
    with pytest.raises(ConfigError, match="architecture differs in num_channels"):
        Trainer(config(toy_data, tmp_path, name="y", init_from=model, model={**TINY, "num_channels": 8}), progress=False)
    from legato_jax.cli.main import main

    cfg_path = tmp_path / "wide.yaml"
    cfg_path.write_text(yaml.safe_dump({**config(toy_data, tmp_path, name="z").to_dict(), "model": {**TINY, "num_channels": 8}}))
    assert main(["train", str(cfg_path), "--init-from", model]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "architecture differs in num_channels" in err


def test_learning_curves_of_two_runs_in_one_figure(toy_data, tmp_path):
    from legato_jax.train.curves import plot_learning_curves, read_metrics

    Trainer(config(toy_data, tmp_path, name="a", max_epochs=2), progress=False).fit()
    m = read_metrics(tmp_path / "a")
    assert list(m["epoch"]) == [1, 2] and np.all(m["val_f_mae"] > 0)
    out = plot_learning_curves({"a": tmp_path / "a", "again": tmp_path / "a" / "metrics.csv"}, tmp_path / "c.png")
    assert out.stat().st_size > 0
    with pytest.raises(ConfigError, match="no metrics.csv"):
        read_metrics(tmp_path / "none")


def test_max_minutes_stops_within_an_epoch_and_resume_repeats_it_whole(toy_data, tmp_path):
    trainer = Trainer(config(toy_data, tmp_path, name="timed", max_minutes=1e-6, batch_size=1), progress=False)
    state = trainer.fit()
    assert "within epoch 1" in trainer.stop_reason and int(state.epoch) == 0
    assert len((tmp_path / "timed" / "metrics.csv").read_text().splitlines()) == 1  # the header only
    trainer, state = resume(tmp_path / "timed", progress=False, overrides={"max_minutes": 60, "max_epochs": 1})
    state = trainer.fit(state)
    assert int(state.epoch) == 1 and int(state.step) == trainer.steps_per_epoch


def test_every_shipped_training_config_loads_and_names_files_that_exist():
    from pathlib import Path

    from legato_jax.shipped import locate

    root = Path(__file__).resolve().parents[1]
    for path in sorted((root / "configs" / "train").glob("*.yaml")):
        cfg = load_train_config(path)
        named = [*cfg.data_files, *(s for s in cfg.split_files if s is not None)]
        named += [ref for ref in (cfg.model, cfg.init_from) if isinstance(ref, str)]
        for ref in named:
            assert locate(ref, base=root).exists(), f"{path.name} names {ref}, which is not in the checkout"
