"""``textsr-train``: training methods' adapters on synth corpora (re-exports only; the command line
is ``pipelines.train.cli:main``; the methods are ``pipelines.train.tadisr`` and
``pipelines.train.glyphsr``, what they share is ``pipelines.train.common``)."""
from pipelines.train.common import BaseTrainer, TrainConfigError, checkpoints
from pipelines.train.tadisr import TrainConfig, Trainer, apply_sets, train

__all__ = ["BaseTrainer", "TrainConfig", "TrainConfigError", "Trainer", "apply_sets", "checkpoints", "train"]
