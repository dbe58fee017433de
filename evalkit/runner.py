"""``evalkit score``: SR a benchmark with a model (or take a folder of outputs), score every image,
write the run directory.

Run directory: ``sr/<key>.png`` (model mode), ``per_image.jsonl`` (one line per image with every
metric), ``state.json`` (metric accumulators after the last finished image, for ``--resume``),
``summary.json``, ``report.md`` and ``report.html``. OCR of HR images is cached per benchmark and
engine under ``$TEXTSR_CACHE`` (default ``~/.cache/textsr``), so a second model does not redo it.
"""
from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from evalkit.benches import Bench, BenchError, folder_pairs, open_bench, read_rgb
from evalkit.metrics.base import MetricUnavailable
from evalkit.sample import EvalSample
from models.cache import cache_dir
from models.files import write_json_atomic
from models.versions import versions
from models.errors import TextsrError

log = logging.getLogger("evalkit")


class ScoreError(TextsrError, RuntimeError):
    """A run that cannot start; the message says why and what to do."""


@dataclass
class ScoreConfig:
    out: Path
    model: str | None = None
    weights: str | None = None
    bench: str | None = None
    sr_dir: str | None = None
    hr_dir: str | None = None
    lr_dir: str | None = None
    scale: int | None = None
    metrics: list[str] = field(default_factory=list)   # empty: evalkit.metrics.registry.DEFAULT_METRICS
    limit: int | None = None
    device: str | None = None
    batch_size: int = 4
    crop_border: int = 0
    resume: bool = False
    strict: bool = False
    ocr_engine: str = "rapidocr-ppocrv4"
    allow_download: bool = False
    progress: bool = True
    report_worst: int = 8
    datasets: str | None = None        # extra datasets.yaml
    lr_preset: str | None = None       # HR-only benchmarks: how their fixed LR is made (None: the protocol's, else matlab-bicubic)
    lr_seed: int = 0
    skip_bad: bool = False             # log and skip malformed annotation lines
    model_options: dict = field(default_factory=dict)  # passed to create_sr (timestep, prompt, base, tile…)
    protocol: str | None = None        # evalkit.protocols name; None: "basicsr" (today's defaults)
    metric_options: dict = field(default_factory=dict)  # {metric: {key: value}} from --metric-opt METRIC.KEY=VALUE


# -- OCR lines <-> JSON ------------------------------------------------------------------------
def lines_to_json(lines) -> list[dict]:
    return [{"polygon": np.asarray(ln.polygon, float).round(2).tolist(), "text": ln.text,
             "score": round(float(ln.score), 4)} for ln in lines]


def lines_from_json(rows):
    from models.ocr import OCRLine

    return [OCRLine(polygon=np.array(r["polygon"], np.float32), text=r["text"], score=r["score"]) for r in rows]


class HROCRCache:
    """OCR lines of each HR image of one benchmark, appended to a JSONL file as they are read."""

    def __init__(self, bench: Bench, engine_name: str):
        self.path = cache_dir() / "ocr_hr" / f"{bench.ident}-{engine_name}.jsonl"
        self.data: dict[str, list] = {}
        if self.path.is_file():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut by a kill: read again below
                self.data[row["key"]] = row["lines"]
        self.hits = self.misses = 0

    def get(self, key: str, hr: np.ndarray, engine):
        if key in self.data:
            self.hits += 1
            return lines_from_json(self.data[key])
        self.misses += 1
        lines = engine.readtext(hr)
        self.data[key] = lines_to_json(lines)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"key": key, "lines": self.data[key]}, ensure_ascii=False) + "\n")
        return lines


# -- metric state for --resume -----------------------------------------------------------------
def metric_state(metric) -> dict:
    """The accumulator: every attribute that is plain data (networks and engines are not)."""
    out = {}
    for k, v in vars(metric).items():
        try:
            json.dumps(v)
        except (TypeError, ValueError):
            continue
        out[k] = v
    return out


def load_metric_state(metric, state: dict) -> None:
    for k, v in state.items():
        cur = getattr(metric, k, None)
        setattr(metric, k, tuple(v) if isinstance(cur, tuple) else v)


# -- the run -----------------------------------------------------------------------------------
def _open(cfg: ScoreConfig) -> Bench:
    if cfg.bench and (cfg.sr_dir or cfg.hr_dir):
        raise ScoreError("give either --bench or --sr-dir/--hr-dir, not both")
    if cfg.bench:
        from models.datasets import load_catalog

        return open_bench(cfg.bench, cfg.limit, catalog=load_catalog(cfg.datasets), scale=cfg.scale,
                          lr_preset=cfg.lr_preset or "bicubic", lr_seed=cfg.lr_seed, skip_bad=cfg.skip_bad)
    if not cfg.hr_dir:
        raise ScoreError("nothing to score: give --bench, or --hr-dir with --sr-dir (outputs) or --lr-dir (inputs)")
    if cfg.sr_dir and cfg.model:
        raise ScoreError("--sr-dir scores existing outputs; drop --model (or drop --sr-dir to run the model)")
    return folder_pairs(Path(cfg.sr_dir) if cfg.sr_dir else None, Path(cfg.hr_dir),
                        Path(cfg.lr_dir) if cfg.lr_dir else None, cfg.limit)


def _build_model(cfg: ScoreConfig, bench: Bench):
    """The SR model at the benchmark's scale: interpolators take any scale, learned models check
    theirs (``realesr-animevideov3`` takes 2, 3 or 4) and say so when it does not fit."""
    from models import create_sr

    scale = cfg.scale or bench.scale
    opts = {"weights": cfg.weights, "device": cfg.device, **cfg.model_options}
    if cfg.model.removesuffix("-tiny") in ("bicubic", "lanczos", "nearest"):
        opts.pop("device")
        opts["scale"] = scale or 4
    else:
        opts["allow_download"] = cfg.allow_download
        if scale:
            opts["scale"] = scale
    try:
        return create_sr(cfg.model, **opts)
    except (ValueError, TypeError) as e:
        raise ScoreError(f"--model {cfg.model}: {e}") from None


def _build_metrics(cfg: ScoreConfig, engine):
    from evalkit.metrics.registry import DEFAULT_METRICS, create_metric

    names = cfg.metrics or list(DEFAULT_METRICS)
    metrics, unavailable = {}, {}
    for name in names:
        try:
            metrics[name] = create_metric(name, ocr=engine, crop_border=cfg.crop_border,
                                          device=cfg.device or "cpu", allow_download=cfg.allow_download)
        except MetricUnavailable as e:
            if cfg.strict:
                raise ScoreError(f"metric {name} is unavailable: {e.reason} (drop --strict to report it as null)") from None
            unavailable[name] = e.reason
            print(f"evalkit: warning: {name} reported as null — {e.reason}", file=sys.stderr)
    return metrics, unavailable


def score(cfg: ScoreConfig) -> dict:
    out = Path(cfg.out)
    per_image = out / "per_image.jsonl"
    state_file = out / "state.json"
    if per_image.exists() and not cfg.resume:
        raise ScoreError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    try:
        bench = _open(cfg)
    except BenchError as e:
        raise ScoreError(str(e)) from None
    model = _build_model(cfg, bench) if cfg.model else None
    if model is None and bench.items and not cfg.sr_dir:
        raise ScoreError("no SR to score: give --model, or --sr-dir with the outputs")
    from models.ocr import create_ocr

    engine = create_ocr(cfg.ocr_engine)
    metrics, unavailable = _build_metrics(cfg, engine)
    need = set().union(*(m.needs for m in metrics.values())) if metrics else set()
    hr_cache = HROCRCache(bench, cfg.ocr_engine) if "ocr_hr" in need else None

    out.mkdir(parents=True, exist_ok=True)
    (out / "sr").mkdir(exist_ok=True)
    done: set[str] = set()
    n_done = 0
    if cfg.resume and state_file.is_file():
        st = json.loads(state_file.read_text(encoding="utf-8"))
        if st.get("metrics_names") != list(metrics):
            raise ScoreError(f"{out}: --resume with other metrics ({st.get('metrics_names')} before, {list(metrics)} now)")
        for name, s in st["metrics"].items():
            load_metric_state(metrics[name], s)
        n_done = st["done"]
        lines = per_image.read_text(encoding="utf-8").splitlines()[:n_done]  # drop a line cut by a kill
        per_image.write_text("".join(ln + "\n" for ln in lines), encoding="utf-8")
        done = {json.loads(ln)["key"] for ln in lines}
    elif cfg.resume and per_image.exists():
        per_image.unlink()  # killed before the first state was written: start over

    from tqdm import tqdm

    bar = tqdm(total=bench.length, initial=len(done), unit="img", desc="evalkit score", file=sys.stderr,
               disable=not cfg.progress, dynamic_ncols=True)
    errors = 0
    t0 = time.perf_counter()
    pending = []

    def flush(batch):
        nonlocal n_done, errors
        if model is not None:
            srs = model.upscale_images([it.lr for it in batch])
        else:
            srs = [read_rgb(it.sr_path) for it in batch]
        with open(per_image, "a", encoding="utf-8") as f:
            for it, sr in zip(batch, srs):
                rec = {"key": it.key}
                if model is not None:
                    cv2.imwrite(str(out / "sr" / f"{it.key}.png"), sr[:, :, ::-1])
                if it.hr is not None and sr.shape != it.hr.shape:
                    rec["error"] = f"SR {sr.shape[1]}x{sr.shape[0]} vs HR {it.hr.shape[1]}x{it.hr.shape[0]}"
                    errors += 1
                    print(f"evalkit: skipped {it.key}: {rec['error']}", file=sys.stderr)
                else:
                    if "fid" in metrics and it.hr_path is None and it.hr is not None:  # FID reads folders
                        (out / "hr").mkdir(exist_ok=True)
                        it.hr_path = out / "hr" / f"{it.key}.png"
                        cv2.imwrite(str(it.hr_path), it.hr[:, :, ::-1])
                    sample = EvalSample(key=it.key, sr=sr, hr=it.hr, lr=it.lr, mask=it.mask, texts=it.texts,
                                        extra={"sr_path": str(it.sr_path or out / "sr" / f"{it.key}.png"),
                                               "hr_path": str(it.hr_path) if it.hr_path else None})
                    if hr_cache is not None and it.hr is not None:
                        sample.ocr_hr = hr_cache.get(it.key, it.hr, engine)
                    if "ocr_sr" in need:
                        sample.ocr_sr = engine.readtext(sr)
                        rec["ocr_sr"] = [ln.text for ln in sample.ocr_sr]
                    for name, m in metrics.items():
                        rec.update(m.update(sample))
                f.write(json.dumps(rec, ensure_ascii=False) + "\n")
                n_done += 1
        write_json_atomic(state_file, {"done": n_done, "metrics_names": list(metrics),
                                 "metrics": {k: metric_state(m) for k, m in metrics.items()}})
        bar.update(len(batch))

    for it in bench.items:
        if it.key in done:
            continue
        pending.append(it)
        if len(pending) >= max(1, cfg.batch_size):
            flush(pending)
            pending = []
    if pending:
        flush(pending)
    bar.close()

    values: dict = {}
    for name, m in metrics.items():
        values.update(m.compute())
    for name, reason in unavailable.items():
        values[name] = None
    summary = {
        "bench": bench.name, "bench_info": bench.info, "images": n_done, "errors": errors,
        "model": cfg.model or "(outputs from --sr-dir)",
        "weights": getattr(model, "weights_info", None) if model is not None else None,
        "scale": cfg.scale or bench.scale or (model.scale if model else None),
        "metrics": values,
        "unavailable": unavailable,
        "settings": {name: m.settings() for name, m in metrics.items()},
        "ocr_engine": cfg.ocr_engine,
        "hr_ocr_cache": {"path": str(hr_cache.path), "hits": hr_cache.hits, "misses": hr_cache.misses} if hr_cache else None,
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()},
        "seconds": round(time.perf_counter() - t0, 2),
        "versions": versions(),
    }
    write_json_atomic(out / "summary.json", summary)
    from evalkit.report import write_reports

    write_reports(out, summary, bench_reopen=lambda: _open(cfg), engine=engine, worst=cfg.report_worst)
    return summary
