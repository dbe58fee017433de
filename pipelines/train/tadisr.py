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

import dataclasses
import difflib
import json
import math
import re
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from models.errors import TextsrError


class TrainConfigError(TextsrError, ValueError):
    """A training option that cannot be used; names it and the fix."""


@dataclass
class TrainConfig:
    model: str
    data: str
    out: str
    max_steps: int
    seed: int = 0
    batch_size: int = 1
    hr_crop: int = 512
    lr: float = 5e-6
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_weight_decay: float = 1e-2
    adam_epsilon: float = 1e-8
    max_grad_norm: float = 1.0
    lr_scheduler: str = "constant"
    lr_warmup_steps: int = 500
    checkpointing_steps: int = 500
    lambda_l2: float = 1.0
    lambda_lpips: float = 5.0
    lambda_edge: float = 5.0
    lambda_focal: float = 1.0
    lambda_dice: float = 10.0
    lambda_focal_mse: float = 0.0
    shuffle_buffer: int = 64
    eval_samples: int = 4
    sample_posterior: bool = True
    weights: str | None = None
    base: str | None = None
    allow_download: bool = False
    device: str | None = None
    notes: dict = field(default_factory=dict)


SETTABLE = [f.name for f in dataclasses.fields(TrainConfig) if f.name not in ("model", "data", "out", "max_steps", "notes")]


def apply_sets(cfg: TrainConfig, items: list[str]) -> TrainConfig:
    """``key=value`` overrides (YAML values) onto ``cfg``; unknown keys and wrong types raise."""
    import yaml

    for item in items:
        key, eq, raw = item.partition("=")
        key = key.strip()
        if not eq:
            raise TrainConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. lr=1e-4")
        if key not in SETTABLE:
            close = difflib.get_close_matches(key, SETTABLE, n=3)
            raise TrainConfigError(f"--set {key}: unknown key" + (f" (did you mean {', '.join(close)}?)" if close
                                                                   else f"; known: {', '.join(SETTABLE)}"))
        try:
            val = yaml.safe_load(raw)
        except yaml.YAMLError:
            raise TrainConfigError(f"--set {item!r}: the value is not valid YAML") from None
        default = getattr(TrainConfig("", "", "", 1), key)
        want = type(default) if default is not None else str
        if want is float and isinstance(val, (int, str)) and not isinstance(val, bool):
            try:  # YAML 1.1 reads "1e-4" (no dot) as a string
                val = float(val)
            except ValueError:
                pass
        if val is not None and not isinstance(val, want) or (want is int and isinstance(val, bool)):
            raise TrainConfigError(f"--set {key}={raw}: expected {want.__name__}, got {type(val).__name__}")
        setattr(cfg, key, val)
    return cfg


def _check(cfg: TrainConfig, align: int):
    from models.sr.tadisr import MODELS

    base = cfg.model.removesuffix("-tiny")
    if base not in MODELS:
        names = [*MODELS, *(m + "-tiny" for m in MODELS)]
        close = difflib.get_close_matches(cfg.model, names, n=3)
        raise TrainConfigError(f"--model {cfg.model}: not a TADiSR model" + (f" (did you mean {', '.join(close)}?)"
                                                                               if close else f"; known: {', '.join(names)}"))
    if cfg.max_steps < 1:
        raise TrainConfigError(f"--max-steps {cfg.max_steps}: must be >= 1")
    if cfg.hr_crop <= 0 or cfg.hr_crop % align:
        raise TrainConfigError(f"--set hr_crop={cfg.hr_crop}: must be a positive multiple of {align} for {cfg.model}")
    for k in ("batch_size", "checkpointing_steps", "eval_samples"):
        if getattr(cfg, k) < 1:
            raise TrainConfigError(f"--set {k}={getattr(cfg, k)}: must be >= 1")


# -- checkpoints --------------------------------------------------------------------------------
def checkpoints(out: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints (``trainer_state.pt`` written last) in ``out``, by step."""
    found = []
    for d in Path(out).glob("checkpoint-*"):
        m = re.fullmatch(r"checkpoint-(\d+)", d.name)
        if m and (d / "trainer_state.pt").is_file():
            found.append((int(m.group(1)), d))
    return sorted(found)


def adapter_file(ckpt: Path) -> Path:
    step = int(ckpt.name.split("-")[1])
    return ckpt / f"model_{step}.pkl"


def _plot(log_path: Path, png: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    if not rows:
        return
    fig, ax = plt.subplots(figsize=(7, 4))
    keys = [k for k in rows[0] if k.startswith("loss")]
    for k in keys:  # log scale: a zero (no text box in the crop, a term switched off) is left out
        ys = [r[k] if r[k] > 0 else float("nan") for r in rows]
        if any(not math.isnan(y) for y in ys):
            ax.plot([r["step"] for r in rows], ys, label=k, lw=1.5 if k == "loss" else 0.8)
    ax.set_xlabel("step")
    ax.set_yscale("log")
    ax.legend(fontsize=7)
    fig.tight_layout()
    from models.files import atomic_path

    with atomic_path(png) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    plt.close(fig)


# -- the run ------------------------------------------------------------------------------------
class Trainer:
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
        self.opt = torch.optim.AdamW(self.params, lr=cfg.lr, betas=(cfg.adam_beta1, cfg.adam_beta2),
                                     weight_decay=cfg.adam_weight_decay, eps=cfg.adam_epsilon)
        from diffusers.optimization import get_scheduler

        self.sched = get_scheduler(cfg.lr_scheduler, optimizer=self.opt, num_warmup_steps=cfg.lr_warmup_steps,
                                   num_training_steps=cfg.max_steps)
        self.gen = torch.Generator().manual_seed(cfg.seed * 1000 + self.rank)
        if ckpt:
            st = torch.load(ckpt / "trainer_state.pt", map_location="cpu", weights_only=False)
            self.opt.load_state_dict(st["optimizer"])
            self.sched.load_state_dict(st["scheduler"])
            rng = ckpt / f"rng_rank{self.rank}.pt"
            if rng.is_file():
                self.gen.set_state(torch.load(rng, weights_only=False))
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

    def _resume_point(self, resume: str):
        if resume == "never":
            return 0, None
        if resume != "auto":
            ck = Path(resume)
            if not (ck / "trainer_state.pt").is_file():
                raise TrainConfigError(f"--resume {ck}: not a complete checkpoint directory (no trainer_state.pt)")
            found = [(int(ck.name.split("-")[1]), ck)]
        else:
            found = checkpoints(self.out)
        if not found:
            return 0, None
        step, ck = found[-1]
        old = json.loads((ck / "config.json").read_text())["config"]
        for k in ("model", "data", "seed", "batch_size", "hr_crop"):
            if str(old.get(k)) != str(getattr(self.cfg, k)):
                raise TrainConfigError(f"{ck}: was trained with {k}={old.get(k)}, this run has {getattr(self.cfg, k)}; "
                                       "use another --out or --resume never")
        return step, ck

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

    def evaluate(self) -> dict:
        """Loss terms on the fixed evaluation batch, eval mode, posterior mean, no grad."""
        import torch

        self.model.set_train(False)
        try:
            with torch.no_grad():
                return {k: float(v) for k, v in self.losses(self.eval_batch, train=False).items()}
        finally:
            self.model.set_train(True)

    def save(self, step: int):
        import torch

        from models.files import atomic_path, write_json_atomic
        from models.versions import versions

        d = self.out / f"checkpoint-{step}"
        self.acc.wait_for_everyone()
        with atomic_path(d / f"rng_rank{self.rank}.pt") as tmp:
            torch.save(self.gen.get_state(), tmp)
        if self.acc.is_main_process:
            self.model.save_adapters(adapter_file(d))
            write_json_atomic(d / "config.json", {"config": dataclasses.asdict(self.cfg), "step": step,
                                                  "versions": versions()})
            with atomic_path(d / "trainer_state.pt") as tmp:
                torch.save({"step": step, "optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict()},
                           tmp)
            _plot(self.out / "loss_log.jsonl", self.out / "loss.png")
        self.acc.wait_for_everyone()

    def params_digest(self) -> str:
        """sha256 of the trainable parameters (float32 bytes, in :meth:`trainable_parameters` order)."""
        import hashlib

        h = hashlib.sha256()
        for p in self.params:
            h.update(p.detach().float().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()

    def _log(self, name: str, row: dict):
        with open(self.out / name, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")

    def run(self) -> dict:
        import torch
        from tqdm.auto import tqdm

        from models.files import write_json_atomic
        from models.versions import versions

        c, main = self.cfg, self.acc.is_main_process
        if main:
            self.out.mkdir(parents=True, exist_ok=True)
            write_json_atomic(self.out / "config.json", {"config": dataclasses.asdict(c), "versions": versions(),
                                                         "resumed_from": self.resumed_from, "start_step": self.start})
            if self.start == 0:
                for n in ("loss_log.jsonl", "eval_log.jsonl"):
                    (self.out / n).unlink(missing_ok=True)
                self._log("eval_log.jsonl", {"step": 0, **self.evaluate()})
        batches = self.stream.batches(c.batch_size, self.start)
        bar = tqdm(total=c.max_steps, initial=self.start, desc=f"train {c.model}", disable=not main, unit="step")
        step = self.start
        while step < c.max_steps:
            t0 = time.perf_counter()
            terms = self.losses(next(batches))
            self.opt.zero_grad(set_to_none=True)
            self.acc.backward(terms["loss"])
            torch.nn.utils.clip_grad_norm_(self.params, c.max_grad_norm)
            self.opt.step()
            self.sched.step()
            step += 1
            if not math.isfinite(float(terms["loss"].detach())):
                raise FloatingPointError(f"step {step}: loss is {float(terms['loss'].detach())}")
            if main:
                row = {"step": step, **{f"loss_{k}" if k != "loss" else k: float(v.detach()) for k, v in terms.items()},
                       "lr": self.sched.get_last_lr()[0], "s_per_step": time.perf_counter() - t0}
                self._log("loss_log.jsonl", row)
                bar.set_postfix(loss=f"{row['loss']:.4f}")
            bar.update(1)
            if step % c.checkpointing_steps == 0 or step == c.max_steps:
                if main:
                    self._log("eval_log.jsonl", {"step": step, **self.evaluate()})
                self.save(step)
        bar.close()
        summary = {"steps": step, "start_step": self.start, "out": str(self.out), "skipped": dict(self.stream.stats),
                   "checkpoint": str(adapter_file(self.out / f"checkpoint-{step}")), "rank": self.rank,
                   "world_size": self.world, "params_sha256": self.params_digest()}
        # every rank records its parameters' digest: data-parallel replicas must end identical
        write_json_atomic(self.out / "ranks" / f"rank{self.rank}.json", summary)
        if main:
            write_json_atomic(self.out / "summary.json", summary)
        self.acc.wait_for_everyone()
        self.acc.end_training()
        return summary


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
