"""``textsr-train glyph-sr``: train GLYPH-SR's Text-ControlNet on a glyph corpus.

GLYPH-SR ("GLYPH-SR: Can We Achieve Both High-Quality Image Super-Resolution and High-Fidelity
Text Recovery via VLM-guided Latent Diffusion Model?"; no public code) is SDXL with a
"TS-ControlNet": a frozen SR-ControlNet plus a trainable Text-ControlNet fed verbalised OCR prompts
("HSBC is displayed at the center") and a scene caption. The model is :mod:`models.sr.glyphsr`;
this trains only its Text-ControlNet (``trainable_parameters()``), every other module frozen, in
float32, with the model's own diffusion loss (``training_loss``: ε-prediction MSE at a random
timestep) on the four subsets of ``synth build --recipe glyph`` (see
:mod:`pipelines.train.glyph_data`: subset drawn per sample with ``subset_weights``, LR members
bicubic-upsampled to the HR size as the ControlNet image, target ``hr.png``, prompt = caption +
the *noisy* LR-OCR, as at inference).

Settings (the paper gives no optimiser details we could check; these are ControlNet-training
defaults): AdamW (lr 1e-5, β 0.9/0.999, weight decay 1e-2, ε 1e-8), grad-norm clip 1.0, diffusers'
``get_scheduler("constant_with_warmup", 500 warmup steps)``, prompt dropout 0.1 (that image's
prompt replaced by the empty one, for classifier-free guidance), checkpoints every 500 steps.
Randomness: subset and crop from the sample's seeded generator; prompt dropout, timesteps, noise
and the VAE posterior from a per-rank ``torch.Generator`` saved with each checkpoint, so a resumed
run repeats an uninterrupted one. Evaluation: the loss on a fixed batch (``eval_samples`` samples,
``eval_subset`` as input, crops centred on the first text, no prompt dropout) with a generator
re-seeded each time, so the timesteps and noise are the same at every evaluation.

Outputs in ``out`` (the layout of :mod:`pipelines.train.common`): ``checkpoint-<step>/`` =
``text_controlnet/{config.json,diffusion_pytorch_model.safetensors}`` + ``glyph_sr.json`` (what
``save_text_controlnet`` writes; ``build("glyph-sr", weights=<that dir>)`` loads it, i.e.
``evalkit score --model glyph-sr --model-opt weights=<out>/checkpoint-<step>``), ``config.json``,
``rng_rank<r>.pt``, ``trainer_state.pt`` (optimizer, scheduler, step; written last);
``config.json``, ``loss_log.jsonl`` (with each step's subsets and dropped prompts),
``eval_log.jsonl``, ``loss.png``, ``summary.json``, ``ranks/rank<r>.json`` at the top.
"""
from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field
from pathlib import Path

from pipelines.train.common import (  # noqa: F401
    BaseTrainer,
    CommonTrainConfig,
    TrainConfigError,
    apply_sets,
    check_common,
)
from pipelines.train.glyph_data import DEFAULT_EVAL_SUBSET
from synth.stages.glyph import SUBSETS

MODELS = ("glyph-sr",)
EVAL_SEED = 20250917  # the evaluation generator's seed offset (fixed t and noise at every evaluation)


@dataclass
class TrainConfig(CommonTrainConfig):
    lr_scheduler: str = "constant_with_warmup"
    prompt_dropout: float = 0.1
    # {subset: weight}; a subset left out weighs 0 (--set replaces the whole mapping)
    subset_weights: dict = field(default_factory=lambda: dict.fromkeys(SUBSETS, 1.0))
    eval_subset: str = DEFAULT_EVAL_SUBSET
    sr_controlnet: str | None = None  # the frozen SR-ControlNet folder (default: the model's resolver)
    # weights: start from this Text-ControlNet (a checkpoint-<step> dir); base: the SDXL folder


def _check(cfg: TrainConfig, scale: int):
    from pipelines.train.glyph_data import subset_probs

    if cfg.model.removesuffix("-tiny") not in MODELS:
        names = [*MODELS, *(m + "-tiny" for m in MODELS)]
        close = difflib.get_close_matches(cfg.model, names, n=3)
        raise TrainConfigError(f"--model {cfg.model}: not a GLYPH-SR model" + (
            f" (did you mean {', '.join(close)}?)" if close else f"; known: {', '.join(names)}"))
    # the VAE's factor 8, and whole LR pixels so the crop of the upsampled LR is aligned
    check_common(cfg, math.lcm(8, scale))
    try:
        subset_probs(cfg.subset_weights)
    except ValueError as e:
        raise TrainConfigError(f"--set {e}") from None
    if cfg.eval_subset not in SUBSETS:
        raise TrainConfigError(f"--set eval_subset={cfg.eval_subset}: not a subset; known: {', '.join(SUBSETS)}")
    if not 0 <= cfg.prompt_dropout <= 1:
        raise TrainConfigError(f"--set prompt_dropout={cfg.prompt_dropout}: must be in [0, 1]")


class Trainer(BaseTrainer):
    """One process of a (data-parallel) GLYPH-SR Text-ControlNet run; see the module docstring."""

    RESUME_KEYS = ("model", "data", "seed", "batch_size", "hr_crop", "subset_weights", "prompt_dropout")

    def __init__(self, cfg: TrainConfig, resume: str = "auto"):
        import torch
        from accelerate import Accelerator
        from accelerate.utils import set_seed

        from pipelines.train.glyph_data import GlyphStream, glyph_fixed_batch
        from synth.shards import open_build

        recipe = open_build(cfg.data, "--data").get("recipe") or {}
        _check(cfg, int((recipe.get("degrade") or {}).get("scale", 1)))
        self.cfg, self.out = cfg, Path(cfg.out)
        cpu = cfg.device == "cpu" or not torch.cuda.is_available()
        # every Text-ControlNet parameter takes part in the loss (checked on 2 gloo processes), so
        # DDP need not search the graph for unused ones each step
        self.acc = Accelerator(cpu=cpu)
        self.rank, self.world = self.acc.process_index, self.acc.num_processes
        self.stream = GlyphStream(cfg.data, hr_crop=cfg.hr_crop, seed=cfg.seed, shuffle_buffer=cfg.shuffle_buffer,
                                  rank=self.rank, world=self.world, subset_weights=cfg.subset_weights)
        self.start, ckpt = self._resume_point(resume)
        from models.sr.glyphsr import build

        set_seed(cfg.seed)  # any random init of the Text-ControlNet, identical on every rank
        self.model = build(cfg.model.removesuffix("-tiny"), tiny=cfg.model.endswith("-tiny"),
                           weights=str(ckpt) if ckpt else cfg.weights, base=cfg.base,
                           sr_controlnet=cfg.sr_controlnet, device=self.acc.device, dtype="float32",
                           allow_download=cfg.allow_download, train=True, ocr_engine=None, caption="fixed")
        self.model.set_train(True)
        self.params = self.model.trainable_parameters()
        # DDP wraps the Text-ControlNet alone (the frozen parts stay out); the model calls the wrapper
        self.net = self.acc.prepare(self.model.text_controlnet)
        self.setup_optimizer(ckpt)
        cfg.notes["world_size"] = self.world
        cfg.notes["cond_upsampling"] = "cv2.resize INTER_CUBIC, float32, clipped to [0, 1]"
        self.eval_batch = glyph_fixed_batch(cfg.data, cfg.eval_samples, cfg.hr_crop, cfg.eval_subset)
        self.resumed_from = str(ckpt) if ckpt else None
        self._dropped: list[bool] = []

    def losses(self, batch, train: bool = True) -> dict:
        import torch

        dev = self.acc.device
        hr, cond, prompts = batch["hr"].to(dev), batch["cond"].to(dev), batch["prompts"]
        if train:
            self._dropped = (torch.rand(len(prompts), generator=self.gen) < self.cfg.prompt_dropout).tolist()
            out = self.model.training_loss(hr, cond, prompts, self.gen, drop=self._dropped, text_net=self.net)
        else:  # the same timesteps and noise at every evaluation
            g = torch.Generator().manual_seed(EVAL_SEED + self.cfg.seed)
            out = self.model.training_loss(hr, cond, prompts, g, drop=None)
        return {"loss": out["loss"], "mse": out["mse"]}

    def row_extra(self, batch) -> dict:
        return {"subsets": batch["subsets"], "prompt_dropped": self._dropped}

    def save_weights(self, d: Path, step: int):
        self.model.save_text_controlnet(d)


def train(cfg: TrainConfig, resume: str = "auto") -> dict:
    """Train (or continue training) on this process; under ``accelerate launch`` each process runs this."""
    return Trainer(cfg, resume).run()
