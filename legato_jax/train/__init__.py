"""Training: SAM and the optimizer chain, losses, the training loop, checkpoints and accuracy.

Models are loaded with `legato_jax.model` (`load_model`, `resolve_model`), re-exported here."""

from legato_jax.model.io import load_model, resolve_model
from legato_jax.train.checkpoint import load_checkpoint, save_checkpoint
from legato_jax.train.config import TrainConfig, load_train_config
from legato_jax.train.evaluate import error_metrics, format_metrics, parity_plot, predict_frames
from legato_jax.train.loss import LossWeights, batch_sums, loss_fn
from legato_jax.train.optimizer import ema_update, make_optimizer, plateau_scale
from legato_jax.train.sam import sam, sam_perturbation
from legato_jax.train.statistics import fit_model_stats
from legato_jax.train.trainer import Datasets, Trainer, TrainingDiverged, TrainState, load_datasets, resume

__all__ = [
    "Datasets", "LossWeights", "TrainConfig", "TrainState", "Trainer", "TrainingDiverged", "batch_sums",
    "ema_update", "error_metrics", "fit_model_stats", "format_metrics", "load_checkpoint", "load_datasets",
    "load_model", "load_train_config", "loss_fn", "make_optimizer", "parity_plot", "plateau_scale",
    "predict_frames", "resolve_model", "resume", "sam", "sam_perturbation", "save_checkpoint",
]
