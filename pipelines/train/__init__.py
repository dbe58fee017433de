"""``textsr-train``: training methods' adapters on synth corpora (re-exports only; the command line
is ``pipelines.train.cli:main``)."""
from pipelines.train.tadisr import TrainConfig, Trainer, apply_sets, train

__all__ = ["TrainConfig", "Trainer", "apply_sets", "train"]
