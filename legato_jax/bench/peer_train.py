"""Training side by side with the peer: our trainer and nequip-allegro 0.8's own (nequip-train,
Lightning) on the same split, the closest settings and the same wall time, one core each; test
force and energy errors, epochs and steps/s. nequip, nequip-allegro and torch stay optional."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

from legato_jax.errors import ConfigError
from legato_jax.model.config import AllegroConfig
from legato_jax.train.config import TrainConfig, load_train_config

ONE_THREAD = {"XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
              "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
SUBSETS = (("train", "train"), ("validation", "val"), ("test", "test"))


def peer_model(config: AllegroConfig, seed: int) -> dict:
    """nequip-allegro 0.8's AllegroModel closest to our Allegro 0.2.0-style config: the same radial
    basis, cutoff, channels, layers, MLP depths and widths, linear readout; energy scale and shift
    from the data as ours."""
    return {
        "_target_": "allegro.model.AllegroModel", "seed": seed, "model_dtype": config.dtype,
        "type_names": list(config.species), "r_max": config.r_max, "l_max": config.l_max,
        "parity": config.parity != "so3",
        "radial_chemical_embed": {"_target_": "allegro.nn.TwoBodyBesselScalarEmbed", "num_bessels": config.num_bessel,
                                  "bessel_trainable": config.bessel_trainable,
                                  "polynomial_cutoff_p": config.polynomial_p},
        "radial_chemical_embed_dim": config.two_body_mlp[0],
        "scalar_embed_mlp_hidden_layers_depth": max(len(config.two_body_mlp) - 2, 0),
        "scalar_embed_mlp_hidden_layers_width": config.two_body_mlp[-1],
        "num_layers": config.num_layers, "num_scalar_features": config.two_body_mlp[-1],
        "num_tensor_features": config.num_channels,
        # our MLP widths end with the output layer; the peer counts hidden layers before its output
        "allegro_mlp_hidden_layers_depth": len(config.latent_mlp) - 1, "allegro_mlp_hidden_layers_width": config.latent_mlp[0],
        "readout_mlp_hidden_layers_depth": len(config.edge_energy_mlp),
        "readout_mlp_hidden_layers_width": config.edge_energy_mlp[0],
        "readout_mlp_nonlinearity": None,  # Allegro 0.2.0's edge-energy MLP is linear (ours too)
        "avg_num_neighbors": "${training_data_stats:num_neighbors_mean}",
        "per_type_energy_shifts": "${training_data_stats:per_atom_energy_mean}",
        "per_type_energy_scales": "${training_data_stats:forces_rms}",
    }


def peer_config(cfg: TrainConfig, files: dict[str, Path], minutes: float, out: Path) -> dict:
    """The nequip-train (hydra) config of our training config: per-atom energy MSE + force MSE with
    our weights, Adam, EMA, plateau scheduler, batch sizes and seeds; the wall-time limit."""
    if cfg.rho > 0:
        raise ConfigError(f"bench train --peer: the peer trains without SAM; give a config with rho 0 (got {cfg.rho})")
    if cfg.stress_weight > 0:
        raise ConfigError("bench train --peer: compares energy + force training; give a config with stress_weight 0")
    species = list(cfg.species)
    loader = lambda n, shuffle: {"_target_": "torch.utils.data.DataLoader", "batch_size": n, "shuffle": shuffle}  # noqa: E731
    metrics = {"_target_": "nequip.train.EnergyForceMetrics",
               "coeffs": {"per_atom_energy_mae": 1.0, "forces_mae": 1.0, "per_atom_energy_rmse": None,
                          "forces_rmse": None, "total_energy_rmse": None}}
    whole = int(minutes * 60)
    return {
        "run": ["train", "test"],
        "hydra": {"run": {"dir": str(out / "peer")}},
        "data": {
            "_target_": "nequip.data.datamodule.ASEDataModule", "seed": cfg.seed,
            "train_file_path": str(files["train"]), "val_file_path": str(files["val"]),
            "test_file_path": str(files["test"]),
            "transforms": [
                {"_target_": "nequip.data.transforms.NeighborListTransform", "r_max": cfg.model_config().r_max},
                {"_target_": "nequip.data.transforms.ChemicalSpeciesToAtomTypeMapper", "model_type_names": species,
                 "chemical_species_to_atom_type_map": {s: s for s in species}},
            ],
            "train_dataloader": loader(cfg.batch_size, True), "val_dataloader": loader(cfg.eval_batch_size, False),
            "test_dataloader": loader(cfg.eval_batch_size, False),
            "stats_manager": {"_target_": "nequip.data.CommonDataStatisticsManager", "type_names": species},
        },
        "trainer": {
            "_target_": "lightning.Trainer", "max_epochs": cfg.max_epochs,
            "max_time": f"00:{whole // 3600:02d}:{whole % 3600 // 60:02d}:{whole % 60:02d}",
            "check_val_every_n_epoch": 1, "enable_progress_bar": False, "accelerator": "cpu",
            "logger": {"_target_": "lightning.pytorch.loggers.CSVLogger", "save_dir": str(out), "name": "peer_log",
                       "version": 0},
            "callbacks": [{"_target_": "lightning.pytorch.callbacks.ModelCheckpoint",
                           "monitor": "val0_epoch/weighted_sum", "dirpath": str(out / "peer"), "filename": "best",
                           "save_top_k": 1}],
        },
        "training_module": {
            "_target_": "nequip.train.EMALightningModule", "ema_decay": cfg.ema_decay,
            "loss": {"_target_": "nequip.train.EnergyForceLoss", "per_atom_energy": True,
                     "coeffs": {"total_energy": cfg.energy_weight, "forces": cfg.forces_weight}},
            "val_metrics": metrics, "test_metrics": metrics,
            "optimizer": {"_target_": "torch.optim.Adam", "lr": cfg.lr},
            "lr_scheduler": {"scheduler": {"_target_": "torch.optim.lr_scheduler.ReduceLROnPlateau",
                                           "factor": cfg.plateau_factor, "patience": cfg.plateau_patience},
                             "monitor": "val0_epoch/weighted_sum"},
            "model": peer_model(cfg.model_config(), cfg.seed),
        },
        "global_options": {"allow_tf32": False},
    }


def write_subsets(cfg: TrainConfig, out: Path) -> dict[str, Path]:
    """The split's train / validation / test frames as plain extxyz files (energy, forces) for the peer."""
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io import write

    from legato_jax.data.io import LabelKeys, read_frames
    from legato_jax.train.trainer import load_datasets

    split = load_datasets(cfg).split
    frames = read_frames(cfg.data, LabelKeys(cfg.energy_key, cfg.forces_key, cfg.stress_key), cfg.species)
    files = {}
    for ours, theirs in SUBSETS:
        idx = split[ours][: cfg.max_train_frames] if ours == "train" and cfg.max_train_frames else split[ours]
        images = []
        for i in idx:
            f = frames[i]
            atoms = Atoms(numbers=f.numbers, positions=f.positions, cell=f.cell, pbc=f.pbc)
            atoms.calc = SinglePointCalculator(atoms, energy=f.energy, forces=f.forces)
            images.append(atoms)
        if not images:
            raise ConfigError(f"bench train --peer: the split's '{ours}' subset is empty; the comparison needs a test set")
        files[theirs] = out / f"{theirs}.extxyz"
        write(files[theirs], images, format="extxyz")
    return files


def _run(cmd: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, **ONE_THREAD}
    return subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env)


def _peer_metrics(out: Path) -> dict:
    """Epochs, steps and test errors from the peer's CSV log (eV -> meV)."""
    rows = list(csv.DictReader(open(out / "peer_log" / "version_0" / "metrics.csv")))
    last = lambda key: next((float(r[key]) for r in reversed(rows) if r.get(key)), float("nan"))  # noqa: E731
    epochs = max((int(r["epoch"]) for r in rows if r.get("val0_epoch/forces_mae")), default=-1) + 1
    return {"epochs": epochs, "steps": int(max(float(r["step"]) for r in rows if r.get("step"))),
            "val_f_mae": 1e3 * last("val0_epoch/forces_mae"),
            "test_f_mae": 1e3 * last("test0_epoch/forces_mae"),
            "test_e_mae": 1e3 * last("test0_epoch/per_atom_energy_mae")}


def _our_metrics(cfg: TrainConfig, run: Path) -> dict:
    from legato_jax.model.io import resolve_model
    from legato_jax.train.evaluate import error_metrics, predict_frames
    from legato_jax.train.trainer import load_datasets

    rows = list(csv.DictReader(open(run / "metrics.csv")))
    potential, params, _ = resolve_model(str(run / "best.npz"))
    data = load_datasets(cfg)
    m = error_metrics(data.test, predict_frames(potential, params, data.test), data.type_map)
    return {"epochs": len(rows), "steps": int(rows[-1]["step"]) if rows else 0,
            "val_f_mae": min(float(r["val_f_mae"]) for r in rows) if rows else float("nan"),
            "test_f_mae": m["forces_mae_meV_per_A"], "test_e_mae": m["energy_per_atom_mae_meV"]}


def _params(out: Path) -> dict:
    """Trainable parameters of both best models."""
    import numpy as onp
    from nequip.model import ModelFromCheckpoint
    from nequip.utils.global_state import set_global_state

    with onp.load(out / "ours" / "best.npz") as z:
        ours = int(sum(z[k].size for k in z.files if k.startswith("param:")))
    set_global_state()
    peer = ModelFromCheckpoint(str(out / "peer" / "best.ckpt"))
    return {"ours": ours, "peer": int(sum(p.numel() for p in peer.parameters() if p.requires_grad))}


def run(config: str, sets: list[str], minutes: float, out: Path, sequential: bool = False) -> dict:
    """Train ours and the peer for `minutes` each (one core each, together unless `sequential`)."""
    import importlib.util

    missing = [m for m in ("torch", "nequip", "allegro") if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(f"bench train --peer: {', '.join(missing)} not importable; pip install "
                          "'torch==2.13.*' 'nequip==0.19.*' 'nequip-allegro==0.8.*' (CPU wheels: "
                          "--index-url https://download.pytorch.org/whl/cpu for torch)")
    cfg = load_train_config(config, list(sets) + [f"out_dir={out}", "name=ours", f"max_minutes={minutes}"])
    if cfg.species is None:
        from legato_jax.train.trainer import load_datasets

        cfg = cfg.with_species(load_datasets(cfg).type_map.symbols)
    out.mkdir(parents=True, exist_ok=True)
    if (out / "ours").exists() or (out / "peer").exists():
        raise ConfigError(f"{out}: holds an earlier comparison; give another --out or remove it")
    files = write_subsets(cfg, out)
    (out / "ours.yaml").write_text(yaml.safe_dump({k: v for k, v in cfg.to_dict().items()}, sort_keys=False))
    (out / "peer.yaml").write_text(yaml.safe_dump(peer_config(cfg, files, minutes, out), sort_keys=False))
    ours_cmd = [sys.executable, "-m", "legato_jax.cli.main", "train", str(out / "ours.yaml")]
    peer_cmd = [str(Path(sys.executable).with_name("nequip-train")), "-cp", str(out.resolve()), "-cn", "peer.yaml"]
    t0 = time.perf_counter()
    walls = {}
    procs = []
    for name, cmd in (("ours", ours_cmd), ("peer", peer_cmd)):
        started = time.perf_counter()
        procs.append((name, _run(cmd, out / f"{name}.log"), started))
        if sequential:
            procs[-1][1].wait()
    for name, p, started in procs:
        if p.wait() != 0:
            raise ConfigError(f"bench train --peer: the {name} run failed (exit {p.returncode}); see {out / (name + '.log')}")
        walls[name] = time.perf_counter() - started
    for name, done in (("ours", out / "ours" / "best.npz"), ("peer", out / "peer" / "best.ckpt")):
        if not done.exists():
            raise ConfigError(f"bench train --peer: the {name} run finished no epoch in {minutes:g} min; "
                              f"give more --minutes (see {out / (name + '.log')})")
    ours, peer = _our_metrics(cfg, out / "ours"), _peer_metrics(out)
    for r, name in ((ours, "ours"), (peer, "peer")):
        r["wall_s"] = walls[name]
        r["steps_per_s"] = r["steps"] / (minutes * 60)
    return {"config": config, "minutes": minutes, "mode": "one after the other" if sequential else "together",
            "host_cores": os.cpu_count(), "params": _params(out), "ours": ours, "peer": peer, "total_s": time.perf_counter() - t0}


def format_report(r: dict) -> str:
    o, p = r["ours"], r["peer"]
    rows = [("epochs", "{:.0f}"), ("steps", "{:.0f}"), ("steps_per_s", "{:.2f}"), ("val_f_mae", "{:.2f}"),
            ("test_f_mae", "{:.2f}"), ("test_e_mae", "{:.3f}")]
    names = {"epochs": "epochs", "steps": "optimizer steps", "steps_per_s": "steps/s (over the limit)",
             "val_f_mae": "best validation F MAE (meV/Å)", "test_f_mae": "test F MAE (meV/Å)",
             "test_e_mae": "test E MAE (meV/atom)"}
    lines = [f"training side by side: {r['config']}, {r['minutes']:g} min each, {r['mode']}, one thread each "
             f"({r['host_cores']} host cores); parameters ours {r['params']['ours']}, nequip-allegro {r['params']['peer']}",
             "| quantity | legato_jax | nequip-allegro 0.8 | ours / peer |", "|---|---|---|---|"]
    for key, fmt in rows:
        ratio = o[key] / p[key] if p[key] else float("nan")
        lines.append(f"| {names[key]} | {fmt.format(o[key])} | {fmt.format(p[key])} | {ratio:.2f} |")
    return "\n".join(lines)

