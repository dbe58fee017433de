"""``textsr-train tadisr``: train TADiSR's adapters on a synth corpus.

Port of the training procedure of Hu et al., "Text-Aware Real-World Image Super-Resolution via
Diffusion Model with Joint Segmentation Decoders" (NeurIPS 2025), github.com/mingcv/TADiSR (MIT
licence), commit 6f591a6, ``scripts/train/train_cogview4.py`` (own code):

* trainable (``set_train``): backbone LoRA (+ Kolors' UNet ``conv_in``), VAE LoRA "vae_skip", the
  skip convs, the joint decoder; all else frozen; float32;
* loss = l2·λ_l2 + LPIPS·λ_lpips + edge·5 (in the OCR boxes) + MSE(mask logits, mask)·λ_l2
  + focal + 10·dice. The official line ``loss_mask_dice, loss_mask_focal = mask_losses(...)``
  unpacks ``(focal, dice)`` the other way round, so its "×10 focal" multiplies the Dice term: this
  reproduces what that code computes (``lambda_focal`` 1, ``lambda_dice`` 10). Focal and Dice are
  summed over the batch, the MSEs averaged (as officially; the official batch is 1).
  ``focal_mse`` (mask-weighted SR MSE) is defined but not used officially: ``lambda_focal_mse`` 0;
* AdamW (lr 5e-6, β 0.9/0.999, weight decay 1e-2, ε 1e-8), grad-norm clip 1.0, diffusers'
  ``get_scheduler`` ("constant", warmup 500), checkpoints every 500 steps (the argparse defaults
  of ``tadisr/training/datasets.py``);
* LPIPS vgg when its weights are found locally; else a warning and λ_lpips recorded as 0 with
  the reason (``config.json``, ``loss_log.jsonl``).

Differences, on purpose: boxes are the corpus's GT text polygons (the official loop runs an OCR
detector on the GT mask); posterior noise comes from a per-rank generator saved with each
checkpoint (officially the global one), so a resumed run repeats an uninterrupted one; the
scheduler is stepped once per optimizer step (officially by accelerate once per process with the
step counts multiplied by the process count — the same schedule).

Outputs in ``out``: ``checkpoint-<step>/model_<step>.pkl`` (the official ``save_model`` layout,
loads with ``build(..., weights=...)``), ``trainer_state.pt`` (optimizer, scheduler, step, RNG),
``rng_rank<r>.pt``, ``config.json``; ``config.json``, ``loss_log.jsonl``, ``eval_log.jsonl``,
``loss.png`` at the top.
"""
from __future__ import annotations

import difflib
import warnings
from dataclasses import dataclass
from pathlib import Path

from pipelines.train.common import (  # noqa: F401  (re-exported: the pieces moved to common)
    BaseTrainer,
    CommonTrainConfig,
    TrainConfigError,
    apply_sets,
    check_common,
    checkpoints,
)


@dataclass
class TrainConfig(CommonTrainConfig):
    lr: float = 5e-6
    lambda_l2: float = 1.0
    lambda_lpips: float = 5.0
    lambda_edge: float = 5.0
    lambda_focal: float = 1.0
    lambda_dice: float = 10.0
    lambda_focal_mse: float = 0.0
    sample_posterior: bool = True


def _check(cfg: TrainConfig, align: int):
    from models.sr.tadisr import MODELS

    base = cfg.model.removesuffix("-tiny")
    if base not in MODELS:
        names = [*MODELS, *(m + "-tiny" for m in MODELS)]
        close = difflib.get_close_matches(cfg.model, names, n=3)
        raise TrainConfigError(f"--model {cfg.model}: not a TADiSR model" + (f" (did you mean {', '.join(close)}?)"
                                                                               if close else f"; known: {', '.join(names)}"))
    check_common(cfg, align)


# -- checkpoints --------------------------------------------------------------------------------
def adapter_file(ckpt: Path) -> Path:
    step = int(ckpt.name.split("-")[1])
    return ckpt / f"model_{step}.pkl"


# -- the run ------------------------------------------------------------------------------------
class Trainer(BaseTrainer):
    """One process of a (data-parallel) training run; see the module docstring."""

    def __init__(self, cfg: TrainConfig, resume: str = "auto"):
        import torch
        from accelerate import Accelerator
        from accelerate.utils import DistributedDataParallelKwargs, set_seed

        from models.sr.tadisr import FAMILIES, MODELS, build
        from pipelines.train.data import CorpusStream, fixed_batch
        from pipelines.train.losses import EdgeDetector, LPIPSLoss

        base = cfg.model.removesuffix("-tiny")
        fam = FAMILIES.get(MODELS.get(base, ""), None)
        _check(cfg, fam.align if fam else 8)
        self.cfg, self.out = cfg, Path(cfg.out)
        cpu = cfg.device == "cpu" or not torch.cuda.is_available()
        # the official DistributedDataParallelKwargs(find_unused_parameters=True): skip_conv_1 is never used
        self.acc = Accelerator(cpu=cpu, kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])
        self.rank, self.world = self.acc.process_index, self.acc.num_processes
        self.stream = CorpusStream(cfg.data, hr_crop=cfg.hr_crop, seed=cfg.seed, shuffle_buffer=cfg.shuffle_buffer,
                                   rank=self.rank, world=self.world)
        self.start, ckpt = self._resume_point(resume)
        weights = str(adapter_file(ckpt)) if ckpt else cfg.weights
        set_seed(cfg.seed)  # the fresh adapters' gaussian init, identical on every rank
        self.model = build(base, tiny=cfg.model.endswith("-tiny"), weights=weights, base=cfg.base,
                           device=self.acc.device, dtype="float32", train=True, allow_download=cfg.allow_download)
        self.model.set_train(True)
        self.params = self.model.trainable_parameters()
        self.net = self.acc.prepare(_Net(self.model))
        self.setup_optimizer(ckpt)
        self.edge = EdgeDetector().to(self.acc.device)
        self.lpips, why = (None, "lambda_lpips is 0") if cfg.lambda_lpips == 0 else LPIPSLoss.load(
            self.acc.device, cfg.allow_download)
        if self.lpips is None and cfg.lambda_lpips:
            warnings.warn(f"LPIPS unavailable, training without it (lambda_lpips {cfg.lambda_lpips} -> 0): {why} "
                          "(here: --set allow_download=true, or put the files in TEXTSR_WEIGHTS)", stacklevel=2)
            cfg.notes["lambda_lpips_requested"] = cfg.lambda_lpips
            cfg.lambda_lpips = 0.0
        cfg.notes["lpips"] = why
        cfg.notes["world_size"] = self.world
        self.eval_batch = fixed_batch(cfg.data, cfg.eval_samples, cfg.hr_crop)
        self.resumed_from = str(ckpt) if ckpt else None

    # one batch -> loss terms (tensors); the official loss
    def losses(self, batch, train: bool = True) -> dict:
        import torch.nn.functional as F

        from pipelines.train.losses import edge_loss, focal_mse, mask_losses

        c, dev = self.cfg, self.acc.device
        lr, hr, mask = batch["lr"].to(dev), batch["hr"].to(dev), batch["mask"].to(dev)
        up = F.interpolate(lr, size=hr.shape[-2:], mode="bicubic", align_corners=False)
        net = self.net if train else self.model.train_forward
        sr, logits = net(up, self.gen if train else None, sample_posterior=c.sample_posterior and train)
        t = {"l2": F.mse_loss(sr, hr) * c.lambda_l2}
        t["lpips"] = self.lpips(sr, hr) * c.lambda_lpips if self.lpips is not None else sr.new_zeros(())
        t["edge"] = edge_loss(self.edge, sr, hr, batch["boxes"]) * c.lambda_edge
        t["mask_mse"] = F.mse_loss(logits, mask) * c.lambda_l2
        focal, dice = mask_losses(logits, mask)
        t["mask_focal"], t["mask_dice"] = focal * c.lambda_focal, dice * c.lambda_dice
        if c.lambda_focal_mse:
            t["focal_mse"] = focal_mse(sr, hr, logits, mask) * c.lambda_focal_mse
        t["loss"] = sum(t.values())
        return t

    def save_weights(self, d: Path, step: int):
        self.model.save_adapters(adapter_file(d))

    def checkpoint_ref(self, step: int) -> str:
        return str(adapter_file(self.out / f"checkpoint-{step}"))


def _net_class():
    from torch import nn

    class Net(nn.Module):
        """The trained modules as one nn.Module (what DDP wraps); forward = ``TADiSR.train_forward``."""

        def __init__(self, model):
            super().__init__()
            self.backbone, self.vae, self.decoder = model.backbone, model.vae, model.decoder
            self._model = [model]  # not a submodule

        def forward(self, up, generator=None, sample_posterior: bool = True):
            return self._model[0].train_forward(up, generator, sample_posterior)

    return Net


def _Net(model):
    return _net_class()(model)


def train(cfg: TrainConfig, resume: str = "auto") -> dict:
    """Train (or continue training) on this process; under ``accelerate launch`` each process runs this."""
    return Trainer(cfg, resume).run()
