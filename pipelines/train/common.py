"""What every ``textsr-train`` method shares: ``--set`` overrides onto a method's ``TrainConfig``,
checkpoint discovery, the resume checks, the loss plot, and :class:`BaseTrainer` — the
data-parallel loop (accelerate), checkpointing, logs and summaries. A method subclasses it with its
model, its stream and :meth:`BaseTrainer.losses`.

Run directory (``out``): ``config.json``; ``loss_log.jsonl`` (one row per optimizer step, rank 0);
``eval_log.jsonl`` (the loss terms on a fixed evaluation batch at step 0 and at every checkpoint);
``loss.png``; ``checkpoint-<step>/`` (the method's weights, ``config.json``, ``rng_rank<r>.pt``,
``trainer_state.pt`` written last: a directory without it is incomplete and ignored);
``summary.json``; ``ranks/rank<r>.json`` (each rank's digest of its trained parameters:
data-parallel replicas must end identical).
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from models.errors import TextsrError

FIXED = ("model", "data", "out", "max_steps", "notes")  # given on the command line / recorded, not --set


class TrainConfigError(TextsrError, ValueError):
    """A training option that cannot be used; names it and the fix."""


@dataclass
class CommonTrainConfig:
    """The options every ``textsr-train`` method has; a method's ``TrainConfig`` subclasses this,
    adds its own and may change a default (TADiSR's lr 5e-6, GLYPH-SR's warm-up schedule)."""

    model: str
    data: str
    out: str
    max_steps: int
    seed: int = 0
    batch_size: int = 1
    hr_crop: int = 512
    lr: float = 1e-5
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_weight_decay: float = 1e-2
    adam_epsilon: float = 1e-8
    max_grad_norm: float = 1.0
    lr_scheduler: str = "constant"
    lr_warmup_steps: int = 500
    checkpointing_steps: int = 500
    shuffle_buffer: int = 64
    eval_samples: int = 4
    weights: str | None = None
    base: str | None = None
    allow_download: bool = False
    device: str | None = None
    notes: dict = field(default_factory=dict)


def settable(cfg) -> list[str]:
    return [f.name for f in dataclasses.fields(cfg) if f.name not in FIXED]


def apply_sets(cfg, items: list[str]):
    """``key=value`` overrides (YAML values) onto the dataclass ``cfg``; unknown keys and wrong types
    raise :class:`TrainConfigError`. The expected type is the field default's (``str`` when None)."""
    import yaml

    keys = settable(cfg)
    defaults = type(cfg)("", "", "", 1)
    for item in items:
        key, eq, raw = item.partition("=")
        key = key.strip()
        if not eq:
            raise TrainConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. lr=1e-4")
        if key not in keys:
            close = difflib.get_close_matches(key, keys, n=3)
            raise TrainConfigError(f"--set {key}: unknown key" + (f" (did you mean {', '.join(close)}?)" if close
                                                                   else f"; known: {', '.join(keys)}"))
        try:
            val = yaml.safe_load(raw)
        except yaml.YAMLError:
            raise TrainConfigError(f"--set {item!r}: the value is not valid YAML") from None
        default = getattr(defaults, key)
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


def check_common(cfg, align: int):
    """The options every method checks the same way (``align``: the model's size multiple)."""
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


def resume_point(cfg, out: Path, resume: str, keys) -> tuple[int, Path | None]:
    """``resume`` ("auto": the last complete checkpoint in ``out``; "never"; or a checkpoint dir) ->
    (step, checkpoint dir or None). A checkpoint trained with other ``keys`` values is refused
    (continuing it would not be the run asked for)."""
    if resume == "never":
        return 0, None
    if resume != "auto":
        ck = Path(resume)
        m = re.fullmatch(r"checkpoint-(\d+)", ck.name)
        if not (ck / "trainer_state.pt").is_file() or not m:
            raise TrainConfigError(f"--resume {ck}: not a complete checkpoint-<step> directory (no trainer_state.pt)")
        found = [(int(m.group(1)), ck)]
    else:
        found = checkpoints(out)
    if not found:
        return 0, None
    step, ck = found[-1]
    old = json.loads((ck / "config.json").read_text())["config"]
    for k in keys:
        if str(old.get(k)) != str(getattr(cfg, k)):
            raise TrainConfigError(f"{ck}: was trained with {k}={old.get(k)}, this run has {getattr(cfg, k)}; "
                                   "use another --out or --resume never")
    return step, ck


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
class BaseTrainer:
    """One process of a (data-parallel) training run.

    A subclass's ``__init__`` sets ``cfg``, ``out``, ``acc`` (an ``accelerate.Accelerator``),
    ``rank``, ``world``, ``stream`` (``batches(batch_size, start_step)``, ``stats``), ``start``,
    ``model`` (with ``set_train``), ``params`` (the trained parameters), ``net`` (the prepared
    module), ``eval_batch``, ``resumed_from``, then calls :meth:`setup_optimizer`; it implements
    :meth:`losses` and :meth:`save_weights`.
    """

    RESUME_KEYS = ("model", "data", "seed", "batch_size", "hr_crop")

    def _resume_point(self, resume: str):
        return resume_point(self.cfg, self.out, resume, self.RESUME_KEYS)

    def setup_optimizer(self, ckpt: Path | None):
        """AdamW over ``params``, diffusers' ``get_scheduler``, the per-rank generator; restored
        from ``ckpt`` when resuming."""
        import torch
        from diffusers.optimization import get_scheduler

        cfg = self.cfg
        self.opt = torch.optim.AdamW(self.params, lr=cfg.lr, betas=(cfg.adam_beta1, cfg.adam_beta2),
                                     weight_decay=cfg.adam_weight_decay, eps=cfg.adam_epsilon)
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

    # -- the method's part
    def losses(self, batch, train: bool = True) -> dict:
        """One batch -> {"loss": total, term: tensor, ...} (``train`` False: the evaluation pass)."""
        raise NotImplementedError

    def save_weights(self, d: Path, step: int):
        """Write the trained weights into the checkpoint directory ``d`` (rank 0 only)."""
        raise NotImplementedError

    def checkpoint_ref(self, step: int) -> str:
        """What loads the checkpoint of ``step`` (``summary.json``'s "checkpoint")."""
        return str(self.out / f"checkpoint-{step}")

    def row_extra(self, batch) -> dict:
        """Extra ``loss_log.jsonl`` fields describing ``batch``."""
        return {}

    # -- shared
    def evaluate(self) -> dict:
        """Loss terms on the fixed evaluation batch, eval mode, no grad."""
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
            self.save_weights(d, step)
            write_json_atomic(d / "config.json", {"config": dataclasses.asdict(self.cfg), "step": step,
                                                  "versions": versions()})
            with atomic_path(d / "trainer_state.pt") as tmp:
                torch.save({"step": step, "optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict()},
                           tmp)
            _plot(self.out / "loss_log.jsonl", self.out / "loss.png")
        self.acc.wait_for_everyone()

    def params_digest(self) -> str:
        """sha256 of the trained parameters (float32 bytes, in ``params`` order)."""
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
            batch = next(batches)
            terms = self.losses(batch)
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
                       "lr": self.sched.get_last_lr()[0], "s_per_step": time.perf_counter() - t0,
                       **self.row_extra(batch)}
                self._log("loss_log.jsonl", row)
                bar.set_postfix(loss=f"{row['loss']:.4f}")
            bar.update(1)
            if step % c.checkpointing_steps == 0 or step == c.max_steps:
                if main:
                    self._log("eval_log.jsonl", {"step": step, **self.evaluate()})
                self.save(step)
        bar.close()
        summary = {"steps": step, "start_step": self.start, "out": str(self.out), "skipped": dict(self.stream.stats),
                   "checkpoint": self.checkpoint_ref(step), "rank": self.rank,
                   "world_size": self.world, "params_sha256": self.params_digest()}
        # every rank records its parameters' digest: data-parallel replicas must end identical
        write_json_atomic(self.out / "ranks" / f"rank{self.rank}.json", summary)
        if main:
            write_json_atomic(self.out / "summary.json", summary)
        self.acc.wait_for_everyone()
        self.acc.end_training()
        return summary
