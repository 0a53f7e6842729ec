"""The training loop: fit statistics, jitted SAM/Adam steps, EMA validation, plateau schedule,
early stopping, atomic checkpoints and exact resume."""

from __future__ import annotations

import csv
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import yaml

from legato_jax.data.batching import BatchLoader
from legato_jax.data.graph import FrameGraph, TypeMap, frame_graph
from legato_jax.data.io import LabelKeys, read_frames
from legato_jax.data.split import block_split, read_split, write_split
from legato_jax.errors import ConfigError, LegatoError
from legato_jax.model.io import resolve_model, save_model
from legato_jax.model.potential import Potential
from legato_jax.outputs import atomic_write_text
from legato_jax.train.checkpoint import load_checkpoint, save_checkpoint
from legato_jax.train.config import TrainConfig
from legato_jax.train.loss import LossWeights, batch_sums, loss_fn
from legato_jax.train.optimizer import ema_update, make_optimizer, plateau_scale
from legato_jax.train.statistics import fit_model_stats
from legato_jax.train.stopping import early_stopping
from legato_jax.yaml_io import read_mapping

METRIC_FIELDS = [
    "epoch", "step", "lr", "train_loss", "val_loss", "train_e_mae", "train_e_rmse", "train_f_mae", "train_f_rmse",
    "val_e_mae", "val_e_rmse", "val_f_mae", "val_f_rmse", "step_time_s", "elapsed_s",
]


class TrainingDiverged(LegatoError):
    """The loss or the parameters became non-finite."""


class TrainState(NamedTuple):
    params: Any
    opt_state: Any
    ema: Any
    step: jax.Array
    epoch: jax.Array
    best_val: jax.Array  # lowest validation loss (best.npz holds its EMA weights)
    epochs_since_best: jax.Array  # the early-stopping count (see train/stopping.py)
    stop_reference: jax.Array  # the early-stopping rule's reference value
    val_loss: jax.Array
    elapsed: jax.Array


@dataclass
class Datasets:
    type_map: TypeMap
    train: list[FrameGraph]
    validation: list[FrameGraph]
    test: list[FrameGraph]
    split: dict[str, list[int]]  # frame indices of each subset, counted through the data files in order


def auto_block(n_frames: int) -> int:
    """Frames per block of an automatic split: 10 consecutive frames (near-duplicates along a
    trajectory stay together) where the data is large enough for ~100 blocks, fewer below."""
    return max(1, min(10, n_frames // 100))


def load_datasets(cfg: TrainConfig) -> Datasets:
    """Read, validate (species against the model's, or take them from the data) and split the
    data (each file by its split file, or in blocks of consecutive frames dealt by the seed);
    neighbour lists. With several data files the subsets are the unions of each file's."""
    keys = LabelKeys(cfg.energy_key, cfg.forces_key, cfg.stress_key)
    frames, split = [], {"train": [], "validation": [], "test": []}
    for file, split_file in zip(cfg.data_files, cfg.split_files):
        part = read_frames(file, keys, cfg.species)
        if split_file is None:
            own = block_split(len(part), cfg.split_fractions, seed=cfg.seed, block=auto_block(len(part)))
        else:
            own = read_split(split_file, len(part))
        for subset, idx in own.items():
            split[subset] = split.get(subset, []) + [len(frames) + i for i in idx]
        frames += part
    type_map = TypeMap(cfg.species) if cfg.species is not None else TypeMap.from_frames(frames)
    r_max = cfg.model_config().r_max
    graphs = {k: [frame_graph(frames[i], type_map, r_max) for i in idx] for k, idx in split.items()}
    if cfg.max_train_frames is not None:
        graphs["train"] = graphs["train"][: cfg.max_train_frames]
    if not graphs["train"] or not graphs["validation"]:
        where = ", ".join(s or f"split_fractions {list(cfg.split_fractions)} of {f}"
                          for f, s in zip(cfg.data_files, cfg.split_files))
        raise ConfigError(f"{where}: training and validation subsets must both be non-empty")
    return Datasets(type_map, graphs["train"], graphs["validation"], graphs["test"], split)


def summarize(sums: dict) -> dict:
    """MAE/RMSE in meV/atom and meV/Å from accumulated `batch_sums`."""
    f = lambda k: float(sums[k])
    out = {
        "e_mae": 1e3 * f("e_abs") / max(f("frames"), 1), "e_rmse": 1e3 * math.sqrt(f("e_sq") / max(f("frames"), 1)),
        "f_mae": 1e3 * f("f_abs") / max(f("f_comp"), 1), "f_rmse": 1e3 * math.sqrt(f("f_sq") / max(f("f_comp"), 1)),
    }
    if f("s_comp") > 0:
        out["s_mae"] = 1e3 * f("s_abs") / f("s_comp")
        out["s_rmse"] = 1e3 * math.sqrt(f("s_sq") / f("s_comp"))
    return out


class Trainer:
    """Holds the jitted functions of one run; `fit()` trains until a stopping rule fires."""

    def __init__(self, cfg: TrainConfig, data: Datasets | None = None, progress: bool = True):
        self.progress = progress
        self.data = data or load_datasets(cfg)
        self.cfg = cfg = cfg.with_species(self.data.type_map.symbols)  # explicit in the saved config
        model_cfg = cfg.model_config()
        self.source = load_source(cfg.init_from, model_cfg) if cfg.init_from else None
        if self.source is not None and cfg.init_stats == "keep":
            stats = self.source[0].stats
        else:
            stats = fit_model_stats(self.data.train, model_cfg.species, cfg.per_species_shift, cfg.e0s)
        self.potential = Potential(model_cfg, stats)
        self.scale = stats.species_scale[0]
        self.weights = LossWeights(cfg.energy_weight, cfg.forces_weight, cfg.stress_weight)
        r = model_cfg.r_max
        self.train_loader = BatchLoader(self.data.train, cfg.batch_size, r, shuffle=True, seed=cfg.seed)
        self.val_loader = BatchLoader(self.data.validation, cfg.eval_batch_size, r, shuffle=False)
        self.steps_per_epoch = len(self.train_loader)
        self.optimizer = make_optimizer(
            cfg.lr, cfg.rho, cfg.sam_adaptive, cfg.sam_eta, cfg.clip_norm, cfg.plateau_factor,
            cfg.plateau_patience, self.steps_per_epoch,
        )
        self.jit_step = jax.jit(self.step)
        self._eval_sums = jax.jit(self._sums)

    # -- pure functions -------------------------------------------------------------------
    def loss(self, params, batch):
        """The training loss of `params` on one padded batch (scalar, in units of the energy scale)."""
        return loss_fn(self.potential.predict(params, batch.graph), batch, self.weights, self.scale)

    def step(self, state: TrainState, batch):
        """One optimizer step as a pure function (`jit_step` is its jitted form) -> (new state, loss, finite)."""
        loss, grads = jax.value_and_grad(self.loss)(state.params, batch)
        grad_fn = lambda p: jax.grad(self.loss)(p, batch)
        updates, opt_state = self.optimizer.update(grads, state.opt_state, state.params, grad_fn=grad_fn,
                                                   value=state.val_loss)
        if self.cfg.lr_milestones:
            epoch = state.step // self.steps_per_epoch
            mult = self.cfg.plateau_factor ** jnp.sum(epoch >= jnp.array(self.cfg.lr_milestones))
            updates = jax.tree_util.tree_map(lambda u: u * mult.astype(u.dtype), updates)
        params = optax.apply_updates(state.params, updates)
        ema = ema_update(state.ema, params, (state.step + 1).astype(jnp.float32), self.cfg.ema_decay)
        finite = jnp.isfinite(loss) & jnp.all(
            jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(params)])
        )
        new = state._replace(params=params, opt_state=opt_state, ema=ema, step=state.step + 1)
        return new, loss, finite

    def milestone_factor(self, epoch: int) -> float:
        """The learning-rate factor of `lr_milestones` during epoch index `epoch` (0-based)."""
        return self.cfg.plateau_factor ** sum(epoch >= m for m in self.cfg.lr_milestones)

    def _early_stopping(self, state: TrainState, value: float) -> TrainState:
        return _early_stopping_step(self.cfg.early_stop_rule, self.cfg.early_stop_delta, state, value)

    def _sums(self, params, batch):
        return batch_sums(self.potential.predict(params, batch.graph), batch)

    # -- host loop ------------------------------------------------------------------------
    def init_state(self) -> TrainState:
        batch = next(iter(BatchLoader(self.data.train[:1], 1, self.potential.config.r_max, shuffle=False)))
        params = self.potential.init(jax.random.PRNGKey(self.cfg.seed), batch.graph)
        if self.source is not None:
            params = _source_params(self.source[1], params, self.cfg.init_from)
        return TrainState(
            params=params, opt_state=self.optimizer.init(params), ema=params, step=jnp.array(0),
            epoch=jnp.array(0), best_val=jnp.array(jnp.inf, jnp.float32), epochs_since_best=jnp.array(0),
            stop_reference=jnp.array(jnp.inf, jnp.float32),
            val_loss=jnp.array(jnp.inf, jnp.float32), elapsed=jnp.array(0.0, jnp.float32),
        )

    def evaluate(self, params, graphs: list[FrameGraph] | None = None) -> dict:
        loader = self.val_loader if graphs is None else BatchLoader(
            graphs, self.cfg.eval_batch_size, self.potential.config.r_max, shuffle=False)
        total = None
        for batch in loader:
            s = self._eval_sums(params, batch)
            total = s if total is None else jax.tree_util.tree_map(jnp.add, total, s)
        total = jax.device_get(total)
        metrics = summarize(total)
        w = self.weights
        loss = w.energy * total["e_sq"] / max(total["frames"], 1) + w.forces * total["f_sq"] / max(total["f_comp"], 1)
        if w.stress and total["s_comp"] > 0:
            loss += w.stress * total["s_sq"] / total["s_comp"]
        metrics["loss"] = float(loss) / self.scale**2
        return metrics

    def fit(self, state: TrainState | None = None, epochs: int | None = None) -> TrainState:
        """Train from `state` (fresh when None) until a stopping rule fires, or for at most
        `epochs` more epochs (a chunk; rerun with the returned state or `resume` to continue)."""
        cfg = self.cfg
        run = cfg.run_dir
        run.mkdir(parents=True, exist_ok=True)
        fresh = state is None
        if fresh:
            state = self.init_state()
            atomic_write_text(run / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))
            atomic_write_text(run / "stats.json", json.dumps({
                "avg_num_neighbors": self.potential.stats.avg_num_neighbors,
                "species_scale": self.potential.stats.species_scale,
                "species_shift": self.potential.stats.species_shift}, indent=1))
            atomic_write_text(run / "metrics.csv", ",".join(METRIC_FIELDS) + "\r\n")
            if all(s is None for s in cfg.split_files):
                write_split(run / "split.json", self.data.split, {
                    "data": cfg.data if isinstance(cfg.data, str) else list(cfg.data), "seed": cfg.seed, "fractions": list(cfg.split_fractions),
                    "block": auto_block(sum(len(v) for v in self.data.split.values()))})
            val = self.evaluate(state.ema)
            state = self._early_stopping(state._replace(val_loss=jnp.array(val["loss"], jnp.float32)), val["loss"])
            save_checkpoint(run / "checkpoint.msgpack", state)
        else:
            truncate_metrics(run / "metrics.csv", int(state.epoch))
        self.train_loader.set_epoch(int(state.epoch))

        from tqdm import tqdm

        start_elapsed = float(state.elapsed)
        t_start = time.perf_counter()
        stop_reason = None
        last_epoch = cfg.max_epochs if epochs is None else min(cfg.max_epochs, int(state.epoch) + epochs)
        bar = tqdm(total=last_epoch, initial=int(state.epoch), unit="epoch", desc=cfg.name, disable=not self.progress,
                   dynamic_ncols=True)

        def out_of_time() -> bool:
            return cfg.max_minutes is not None and start_elapsed + time.perf_counter() - t_start > 60 * cfg.max_minutes

        while int(state.epoch) < last_epoch:
            epoch = int(state.epoch)
            t_epoch = time.perf_counter()
            train_loss = 0.0
            at_epoch_start = state
            for b, batch in enumerate(self.train_loader):
                if b and out_of_time():  # the partial epoch is dropped: the checkpoint stays at its start
                    stop_reason = (f"wall-time limit of {cfg.max_minutes} min, within epoch {epoch + 1} (its "
                                   f"{b} of {self.steps_per_epoch} batches dropped; resume repeats it whole)")
                    state = at_epoch_start
                    break
                new_state, loss, finite = self.jit_step(state, batch)
                if not bool(finite):
                    bar.close()
                    raise TrainingDiverged(
                        f"non-finite loss or parameters at step {int(state.step) + 1} (epoch {epoch + 1}, "
                        f"batch {b}); the last good checkpoint is {run / 'checkpoint.msgpack'}; "
                        f"lower lr or rho, or set clip_norm"
                    )
                state = new_state
                train_loss += float(loss)
                bar.set_postfix_str(f"batch {b + 1}/{self.steps_per_epoch}", refresh=b % 20 == 0)
            if stop_reason:
                break
            step_time = (time.perf_counter() - t_epoch) / self.steps_per_epoch
            val = self.evaluate(state.ema)
            train_metrics = self.evaluate(state.params, self.data.train[: max(len(self.data.validation), 1)])
            improved = val["loss"] < float(state.best_val)
            elapsed = start_elapsed + time.perf_counter() - t_start
            lr = cfg.lr * float(plateau_scale(state.opt_state)) * self.milestone_factor(epoch)
            state = state._replace(
                epoch=state.epoch + 1, val_loss=jnp.array(val["loss"], jnp.float32),
                best_val=jnp.array(min(val["loss"], float(state.best_val)), jnp.float32),
                elapsed=jnp.array(elapsed, jnp.float32),
            )
            state = self._early_stopping(state, val["loss"])
            if improved:
                save_model(run / "best.npz", self.potential, state.ema,
                           extra={"epoch": epoch + 1, "val": val, "train_config": cfg.to_dict()})
            with open(run / "metrics.csv", "a", newline="") as fh:
                csv.writer(fh).writerow([
                    epoch + 1, int(state.step), lr, train_loss / self.steps_per_epoch, val["loss"],
                    train_metrics["e_mae"], train_metrics["e_rmse"], train_metrics["f_mae"], train_metrics["f_rmse"],
                    val["e_mae"], val["e_rmse"], val["f_mae"], val["f_rmse"], step_time, elapsed,
                ])
            save_checkpoint(run / "checkpoint.msgpack", state)
            bar.set_postfix_str(f"val F MAE {val['f_mae']:.1f} meV/Å, lr {lr:.2g}", refresh=False)
            bar.update(1)
            if lr < cfg.min_lr:
                stop_reason = f"learning rate {lr:.2g} < min_lr {cfg.min_lr}"
            elif int(state.epochs_since_best) >= cfg.early_stop_patience:
                stop_reason = (f"validation loss not reduced by more than {cfg.early_stop_delta:g} "
                               f"({cfg.early_stop_rule} rule) for {cfg.early_stop_patience} epochs")
            elif out_of_time():
                stop_reason = f"wall-time limit of {cfg.max_minutes} min"
            if stop_reason:
                break
        bar.close()
        self.stop_reason = stop_reason or (f"max_epochs {cfg.max_epochs}" if last_epoch == cfg.max_epochs
                                           else f"chunk of {epochs} epochs")
        return state


def load_source(path: str, model_cfg) -> tuple[Potential, Any]:
    """The model to fine-tune from; its species and architecture must equal the config's (the
    dtype may differ)."""
    potential, params, _ = resolve_model(path)
    source = potential.config
    if tuple(source.species) != tuple(model_cfg.species):
        raise ConfigError(f"--init-from {path}: the model's species {list(source.species)} differ from the training "
                          f"config's {list(model_cfg.species)}; fine-tuning needs the same species in the same order")
    mine, theirs = model_cfg.to_dict(), source.to_dict()
    differ = [k for k in mine if k != "dtype" and mine[k] != theirs.get(k)]
    if differ:
        k = differ[0]
        raise ConfigError(f"--init-from {path}: architecture differs in {', '.join(differ)} (model {k}={theirs.get(k)!r}, "
                          f"config {k}={mine[k]!r}); give the training config the model's architecture")
    return potential, params


def _source_params(source, fresh, path: str):
    """The source weights in the fresh parameters' structure and dtypes."""
    if jax.tree_util.tree_structure(source) != jax.tree_util.tree_structure(fresh) or any(
            np.shape(a) != np.shape(b) for a, b in zip(jax.tree_util.tree_leaves(source), jax.tree_util.tree_leaves(fresh))):
        raise ConfigError(f"--init-from {path}: its parameters do not fit this model's (another version of the model?)")
    return jax.tree_util.tree_map(lambda a, b: jnp.asarray(a, b.dtype), source, fresh)


def _early_stopping_step(rule: str, delta: float, state: TrainState, value: float) -> TrainState:
    reference, count = early_stopping(rule)(float(state.stop_reference), int(state.epochs_since_best), value, delta)
    return state._replace(stop_reference=jnp.array(reference, jnp.float32), epochs_since_best=jnp.array(count))


def truncate_metrics(path: Path, epochs: int) -> None:
    """Drop rows written after the checkpoint being resumed, and a row cut short by a kill
    mid-append; rewritten atomically, so a kill mid-rewrite leaves the old file whole."""
    import io

    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    keep = [rows[0]] + [r for r in rows[1:] if len(r) == len(rows[0]) and r[0].isdigit() and int(r[0]) <= epochs]
    text = io.StringIO(newline="")
    csv.writer(text).writerows(keep)
    atomic_write_text(path, text.getvalue())


RESUME_OVERRIDES = ("max_minutes", "max_epochs", "early_stop_patience", "lr_milestones")


def resume(run_dir: str | Path, progress: bool = True, overrides: dict | None = None) -> tuple[Trainer, TrainState]:
    """Rebuild the trainer from RUN_DIR/config.yaml and restore its last checkpoint. `overrides`
    may change only the stopping rules and the milestones (RESUME_OVERRIDES), e.g. to train an
    ended run for longer with a lower learning rate;
    they are written back to config.yaml."""
    run_dir = Path(run_dir)
    cfg_path = run_dir / "config.yaml"
    ckpt = run_dir / "checkpoint.msgpack"
    if not cfg_path.exists() or not ckpt.exists():
        raise ConfigError(f"{run_dir}: not a training run directory (needs config.yaml and checkpoint.msgpack)")
    data = read_mapping(cfg_path, "training run config")
    overrides = overrides or {}
    bad = sorted(set(overrides) - set(RESUME_OVERRIDES))
    if bad:
        raise ConfigError(f"--resume can only change {list(RESUME_OVERRIDES)}, not {bad}; start a new run for other settings")
    data.update(overrides)
    data["out_dir"] = str(run_dir.parent)
    data["name"] = run_dir.name
    cfg = TrainConfig.from_dict(data, str(cfg_path))
    if overrides:
        saved = read_mapping(cfg_path, "training run config")
        saved.update(overrides)
        atomic_write_text(cfg_path, yaml.safe_dump(saved, sort_keys=False))
    trainer = Trainer(cfg, progress=progress)
    # checkpoints from before the early-stopping reference was stored: the best value is the
    # reference both rules kept then
    state = load_checkpoint(ckpt, trainer.init_state(), missing={"stop_reference": lambda d: d["best_val"]})
    return trainer, state
