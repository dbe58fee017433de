"""``evalkit score``: SR a benchmark with a model (or take a folder of outputs), score every image,
write the run directory.

Run directory: ``sr/<key>.png`` (model mode), ``per_image.jsonl`` (one line per image with every
metric), ``state.json`` (metric accumulators after the last finished image, for ``--resume``),
``summary.json``, ``report.md`` and ``report.html``. OCR of HR images is cached per benchmark and
engine under ``$TEXTSR_CACHE`` (default ``~/.cache/textsr``), so a second model does not redo it.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from evalkit.benches import Bench, BenchError, folder_pairs, open_bench, read_rgb
from evalkit.metrics.base import MetricUnavailable
from evalkit.sample import EvalSample
from models.cache import cache_dir, cache_key
from models.files import write_json_atomic
from models.versions import versions
from models.errors import TextsrError


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
    crop_border: int | None = None     # None: the protocol's (0 for all four built-in ones)
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
    mask_dir: str | None = None        # predicted text masks made elsewhere (gray PNG, by key), with --sr-dir


# -- OCR lines <-> JSON ------------------------------------------------------------------------
def lines_to_json(lines) -> list[dict]:
    return [{"polygon": np.asarray(ln.polygon, float).round(2).tolist(), "text": ln.text,
             "score": round(float(ln.score), 4)} for ln in lines]


def lines_from_json(rows):
    from models.ocr import OCRLine

    return [OCRLine(polygon=np.array(r["polygon"], np.float32), text=r["text"], score=r["score"]) for r in rows]


# Bump when what is cached for an HR image changes (the reading, its rounding, the JSON layout).
HR_OCR_CACHE_VERSION = 2


def engine_identity(engine) -> dict:
    """What an OCR engine's readings depend on: its ``settings()`` (name, batching, detector size
    policy, thresholds) and its model files named by their content (sha256), not their path."""
    from models.files import file_digest

    out = dict(engine.settings())
    for k, v in sorted(vars(engine).items()):
        if k.endswith("_model_path") and isinstance(v, str) and Path(v).is_file():
            out[k.removesuffix("_path") + "_sha256"] = file_digest(v)
    return out


def image_digest(img: np.ndarray) -> str:
    """sha256 of a decoded image's pixels and shape: the same pixels give the same key wherever
    they were read from (a folder, a shard, a synthesised LR)."""
    import hashlib

    a = np.ascontiguousarray(img)
    return hashlib.sha256(f"{a.dtype}{a.shape}".encode() + a.tobytes()).hexdigest()


class HROCRCache:
    """OCR lines of HR images, keyed by the HR pixels (:func:`image_digest`) in one JSONL file per
    engine configuration (:func:`engine_identity` + :data:`HR_OCR_CACHE_VERSION`), appended as they
    are read. An edited HR image, another engine setting or a new cache version never meets an old
    reading; the same image in two benchmarks is read once."""

    def __init__(self, engine):
        ident = engine_identity(engine)
        self.key = cache_key(ident, HR_OCR_CACHE_VERSION)
        self.path = cache_dir("ocr_hr", f"{engine.name}-{self.key}.jsonl")
        self.data: dict[str, list] = {}
        if self.path.is_file():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                    self.data[row["hr"]] = row["lines"]
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue  # a line cut by a kill: that image is read again
        self.hits = self.misses = 0

    def info(self) -> dict:
        return {"path": str(self.path), "key": self.key, "version": HR_OCR_CACHE_VERSION,
                "hits": self.hits, "misses": self.misses}

    def get(self, hr: np.ndarray, engine):
        digest = image_digest(hr)
        if digest in self.data:
            self.hits += 1
            return lines_from_json(self.data[digest])
        self.misses += 1
        lines = engine.readtext(hr)
        self.data[digest] = lines_to_json(lines)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"hr": digest, "lines": self.data[digest]}, ensure_ascii=False) + "\n")
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
def _protocol(cfg: ScoreConfig):
    from evalkit.protocols import DEFAULT_PROTOCOL, get_protocol

    return get_protocol(cfg.protocol or DEFAULT_PROTOCOL)


def _open(cfg: ScoreConfig, protocol=None) -> Bench:
    if cfg.bench and cfg.hr_dir:
        raise ScoreError("--hr-dir with --bench: the benchmark brings its own HR; drop --hr-dir "
                         "(--sr-dir with --bench scores outputs made elsewhere on the benchmark)")
    if cfg.sr_dir and cfg.model:
        raise ScoreError("--sr-dir scores existing outputs; drop --model (or drop --sr-dir to run the model)")
    if cfg.bench:
        from models.datasets import load_catalog

        protocol = protocol or _protocol(cfg)
        return open_bench(cfg.bench, cfg.limit, catalog=load_catalog(cfg.datasets), scale=cfg.scale,
                          lr_preset=lr_preset_of(cfg, protocol), lr_seed=cfg.lr_seed, skip_bad=cfg.skip_bad)
    if not cfg.hr_dir:
        raise ScoreError("nothing to score: give --bench, or --hr-dir with --sr-dir (outputs) or --lr-dir (inputs)")
    return folder_pairs(Path(cfg.sr_dir) if cfg.sr_dir else None, Path(cfg.hr_dir),
                        Path(cfg.lr_dir) if cfg.lr_dir else None, cfg.limit)


def lr_preset_of(cfg: ScoreConfig, protocol) -> str:
    """The fixed-LR preset of HR-only benchmarks: ``--lr-preset``, else the protocol's, else
    MATLAB-style antialiased bicubic (what SR papers mean by "bicubic LR")."""
    return cfg.lr_preset or protocol.lr_preset or "matlab-bicubic"


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


MASK_METRICS = ("mask_iou", "mask_f1")


def _metric_kwargs(cfg: ScoreConfig, protocol, masks: bool = False) -> dict[str, dict]:
    """Metric name -> keyword arguments: the protocol's, narrowed by ``--metrics`` and overridden by
    ``--metric-opt``. A protocol other than ``basicsr`` only runs its own metrics, plus the mask
    metrics when there are predicted text masks (``masks``) and ``--metrics`` is not given."""
    from evalkit.metrics.registry import list_metrics

    names = cfg.metrics or list(protocol.metrics)
    known = set(list_metrics())
    out = {}
    for name in names:
        if name not in known:
            import difflib

            close = difflib.get_close_matches(name, sorted(known), n=1)
            raise ScoreError(f"--metrics: unknown metric {name!r}" + (f"; did you mean {close[0]!r}?" if close else "")
                             + f" (known: {', '.join(sorted(known))})")
        if name not in protocol.metrics and protocol.name != "basicsr" and name not in MASK_METRICS:
            raise ScoreError(f"--metrics: {name!r} is not part of protocol {protocol.name!r} "
                             f"(its metrics: {', '.join(protocol.metrics)}); drop --protocol to score it")
        out[name] = dict(protocol.metrics.get(name, {}))
    if masks and not cfg.metrics:  # the model predicts text masks (or --mask-dir has them): score them too
        out.update({name: {} for name in MASK_METRICS if name not in out})
    for name, opts in cfg.metric_options.items():
        if name not in out:
            raise ScoreError(f"--metric-opt {name}.…: {name!r} is not among this run's metrics ({', '.join(out)})")
        out[name].update(opts)
    return out


def _build_metrics(cfg: ScoreConfig, engine, protocol, masks: bool = False):
    from evalkit.metrics.registry import create_metric

    crop = protocol.crop_border if cfg.crop_border is None else cfg.crop_border
    metrics, unavailable = {}, {}
    for name, kw in _metric_kwargs(cfg, protocol, masks).items():
        try:
            metrics[name] = create_metric(name, **{"ocr": engine, "crop_border": crop, "device": cfg.device or "cpu",
                                                   "allow_download": cfg.allow_download, **kw})
        except MetricUnavailable as e:
            if cfg.strict:
                raise ScoreError(f"metric {name} is unavailable: {e.reason} (drop --strict to report it as null)") from None
            unavailable[name] = e.reason
            print(f"evalkit: warning: {name} reported as null — {e.reason}", file=sys.stderr)
        except TypeError as e:
            if name in cfg.metric_options:
                raise ScoreError(f"--metric-opt {name}: {e}") from None
            raise
    return metrics, unavailable


def _plain(obj):
    """``obj`` as JSON would give it back (tuples as lists, paths as strings), for comparisons."""
    return json.loads(json.dumps(obj, default=str))


_RUNTIME_ONLY = ("device",)  # settings that do not change what a metric means


def run_identity(cfg: ScoreConfig, bench: Bench, model, metrics: dict, unavailable: dict, protocol, engine) -> dict:
    """Everything a run's numbers depend on. ``--resume`` continues a run only when this is equal."""
    def settings(m):
        return {k: v for k, v in m.settings().items() if k not in _RUNTIME_ONLY}

    def folder(p):
        return str(Path(p).resolve()) if p else None

    return _plain({
        "model": cfg.model, "model_options": cfg.model_options,
        "weights": getattr(model, "weights_info", None) if model is not None else None,
        "bench": {"name": bench.name, "info": bench.info, "content": bench.ident},
        "sr_dir": folder(cfg.sr_dir), "hr_dir": folder(cfg.hr_dir), "lr_dir": folder(cfg.lr_dir),
        "mask_dir": folder(cfg.mask_dir),
        "scale": cfg.scale or bench.scale or (model.scale if model is not None else None),
        "protocol": protocol.to_dict(),
        "metrics": {name: settings(m) for name, m in metrics.items()},
        "unavailable": sorted(unavailable),
        "ocr_engine": engine_identity(engine),
    })


def _differences(before: dict, now: dict) -> list[str]:
    out = []
    for k in sorted(set(before) | set(now)):
        a, b = before.get(k), now.get(k)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            sub = [f"{k}.{d}" for d in _differences(a, b)]
            out += sub
        else:
            def short(v):
                t = json.dumps(v, ensure_ascii=False)
                return t if len(t) <= 60 else "…" + t[-59:]  # a path's end tells runs apart
            out.append(f"{k} ({short(a)} before, {short(b)} now)")
    return out


class _Skip(Exception):
    """One image that cannot be scored (unreadable, no SR output, size mismatch): logged and counted."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


def _sr_files(cfg: ScoreConfig) -> dict[str, Path] | None:
    from evalkit.benches import images_by_stem

    if not (cfg.bench and cfg.sr_dir):
        return None
    try:
        return images_by_stem(Path(cfg.sr_dir), "--sr-dir")
    except BenchError as e:
        raise ScoreError(str(e)) from None


def _mask_files(cfg: ScoreConfig) -> dict[str, Path] | None:
    from evalkit.benches import images_by_stem

    if not cfg.mask_dir:
        return None
    if not cfg.sr_dir:
        raise ScoreError("--mask-dir holds text masks made elsewhere, beside --sr-dir's outputs; a model run "
                         "writes its own masks when it predicts them")
    try:
        return images_by_stem(Path(cfg.mask_dir), "--mask-dir")
    except BenchError as e:
        raise ScoreError(str(e)) from None


def _read_mask(it, mask_files: dict, size: tuple[int, int]) -> tuple[np.ndarray | None, str | None]:
    """The predicted text mask of an item from ``--mask-dir`` (gray, 0..255 -> [0, 1]), paired like
    its SR; None (the mask metrics count the image as without prediction) when it is missing,
    unreadable or of another size, with a warning for the last two."""
    path = mask_files.get(it.key) or (mask_files.get(Path(it.hr_path).stem) if it.hr_path else None)
    if path is None:
        return None, None
    m = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if m is None or m.shape != tuple(size):
        why = "cannot be read as an image" if m is None else f"is {m.shape[1]}x{m.shape[0]}, SR is {size[1]}x{size[0]}"
        print(f"evalkit: warning: mask {path} {why}; {it.key} has no predicted mask", file=sys.stderr)
        return None, str(path)
    return m.astype(np.float32) / 255.0, str(path)


def _read_sr(it, sr_files: dict | None) -> tuple[np.ndarray, Path]:
    """The SR output of a bench item: its folder pair, or (``--bench`` with ``--sr-dir``) the
    ``--sr-dir`` image named like the item's key, else like its HR file."""
    path = it.sr_path
    if sr_files is not None:
        path = sr_files.get(it.key) or (sr_files.get(Path(it.hr_path).stem) if it.hr_path else None)
        if path is None:
            raise _Skip("sr-missing", f"--sr-dir has no image named {it.key}"
                        + (f" or {Path(it.hr_path).stem}" if it.hr_path and Path(it.hr_path).stem != it.key else ""))
    try:
        return read_rgb(path), Path(path)
    except BenchError as e:
        raise _Skip("sr-unreadable", str(e)) from None


def score(cfg: ScoreConfig) -> dict:
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise ScoreError(f"--out {out} is a file; give a directory for the run")
    per_image = out / "per_image.jsonl"
    state_file = out / "state.json"
    if per_image.exists() and not cfg.resume:
        raise ScoreError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    if cfg.resume and not per_image.exists():
        print(f"evalkit: no run in {out} to resume; starting a new one", file=sys.stderr)
    protocol = _protocol(cfg)
    try:
        bench = _open(cfg, protocol)
    except BenchError as e:
        raise ScoreError(str(e)) from None
    sr_files = _sr_files(cfg)
    model = _build_model(cfg, bench) if cfg.model else None
    if model is None and bench.items and not cfg.sr_dir:
        raise ScoreError("no SR to score: give --model, or --sr-dir with the outputs")
    mask_files = _mask_files(cfg)
    model_masks = model is not None and "text_mask" in model.aux_outputs
    from models.ocr import create_ocr

    engine = create_ocr(cfg.ocr_engine)
    metrics, unavailable = _build_metrics(cfg, engine, protocol, masks=model_masks or mask_files is not None)
    need = set().union(*(m.needs for m in metrics.values())) if metrics else set()
    hr_cache = HROCRCache(engine) if "ocr_hr" in need else None
    identity = run_identity(cfg, bench, model, metrics, unavailable, protocol, engine)

    out.mkdir(parents=True, exist_ok=True)
    (out / "sr").mkdir(exist_ok=True)
    done: set[str] = set()
    n_done = 0
    skipped: dict[str, int] = {}
    if cfg.resume and (state_file.is_file() or per_image.exists()):
        st = json.loads(state_file.read_text(encoding="utf-8")) if state_file.is_file() else None
        before = (st or {}).get("identity") or _read_identity(out)
        if before is None:
            raise ScoreError(f"{out}: --resume of a run that recorded no identity (made by an older evalkit); "
                             "start a new run in another --out")
        diff = _differences(before, identity)
        if diff:
            raise ScoreError(f"{out}: --resume refused, this run differs from the one it would continue: "
                             + "; ".join(diff[:4]) + (f" (+{len(diff) - 4} more)" if len(diff) > 4 else ""))
        if st is not None:
            for name, s in st["metrics"].items():
                load_metric_state(metrics[name], s)
            n_done, skipped = st["done"], dict(st.get("skipped", {}))
            lines = per_image.read_text(encoding="utf-8").splitlines()[:n_done]  # drop a line cut by a kill
            per_image.write_text("".join(ln + "\n" for ln in lines), encoding="utf-8")
            done = {json.loads(ln)["key"] for ln in lines}
        else:
            per_image.unlink(missing_ok=True)  # killed before the first state was written: start over
    write_json_atomic(out / "run.json", identity)

    from tqdm import tqdm

    bar = tqdm(total=bench.length, initial=len(done), unit="img", desc="evalkit score", file=sys.stderr,
               disable=not cfg.progress, dynamic_ncols=True)
    t0 = time.perf_counter()
    pending = []

    def skip(rec: dict, key: str, err: _Skip) -> None:
        if cfg.strict:
            raise ScoreError(f"{key}: {err} (drop --strict to skip and count such images)")
        rec.update({"skipped": err.reason, "error": err.detail})
        skipped[err.reason] = skipped.get(err.reason, 0) + 1
        print(f"evalkit: skipped {key}: {err}", file=sys.stderr)

    def flush(batch):
        nonlocal n_done
        # bench items that could not be read arrive with an error; the model sees only the readable LR
        runnable = [it for it in batch if not it.error]
        model_out = {}  # key -> (SR, auxiliary maps)
        if model is not None and runnable:
            lrs = [it.lr for it in runnable]
            res = model.upscale_images_aux(lrs) if model_masks else [(sr, {}) for sr in model.upscale_images(lrs)]
            model_out = {it.key: r for it, r in zip(runnable, res)}
        with open(per_image, "a", encoding="utf-8") as f:
            for it in batch:
                rec = {"key": it.key}
                try:
                    if it.error:
                        raise _Skip(it.error_reason or "unreadable", it.error)
                    pred_mask = None
                    if model is not None:
                        (sr, aux), sr_path = model_out[it.key], out / "sr" / f"{it.key}.png"
                        cv2.imwrite(str(sr_path), sr[:, :, ::-1])
                        if "text_mask" in aux:
                            pred_mask = aux["text_mask"]
                            (out / "mask").mkdir(exist_ok=True)
                            rec["mask_path"] = str(out / "mask" / f"{it.key}.png")
                            cv2.imwrite(rec["mask_path"], np.round(pred_mask * 255).astype(np.uint8))
                    else:
                        sr, sr_path = _read_sr(it, sr_files)
                        if mask_files is not None:
                            pred_mask, rec["mask_path"] = _read_mask(it, mask_files, sr.shape[:2])
                    rec["sr_path"] = str(sr_path)
                    if it.hr_path:
                        rec["hr_path"] = str(it.hr_path)
                    if it.meta.get("lr_path"):
                        rec["lr_path"] = str(it.meta["lr_path"])
                    if it.hr is not None and sr.shape != it.hr.shape:
                        raise _Skip("size-mismatch", f"SR {sr.shape[1]}x{sr.shape[0]} vs HR {it.hr.shape[1]}x{it.hr.shape[0]}")
                except _Skip as e:
                    skip(rec, it.key, e)
                else:
                    if "fid" in metrics and it.hr_path is None and it.hr is not None:  # FID reads folders
                        (out / "hr").mkdir(exist_ok=True)
                        it.hr_path = out / "hr" / f"{it.key}.png"
                        cv2.imwrite(str(it.hr_path), it.hr[:, :, ::-1])
                        rec["hr_path"] = str(it.hr_path)
                    sample = EvalSample(key=it.key, sr=sr, hr=it.hr, lr=it.lr, mask=it.mask, texts=it.texts,
                                        pred_mask=pred_mask, extra={"sr_path": str(sr_path),
                                               "hr_path": str(it.hr_path) if it.hr_path else None})
                    # HR OCR is the reference of OCR metrics only where the benchmark has no annotations
                    if hr_cache is not None and it.hr is not None and it.texts is None:
                        sample.ocr_hr = hr_cache.get(it.hr, engine)
                    if "ocr_sr" in need:
                        sample.ocr_sr = engine.readtext(sr)
                        rec["ocr_sr"] = [ln.text for ln in sample.ocr_sr]
                    for name, m in metrics.items():
                        rec.update(m.update(sample))
                f.write(json.dumps(rec, ensure_ascii=False) + "\n")
                n_done += 1
        write_json_atomic(state_file, {"done": n_done, "skipped": skipped, "identity": identity,
                                       "metrics_names": list(metrics),
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

    n_skipped = sum(skipped.values())
    n_scored = n_done - n_skipped
    if n_done and not n_scored:
        raise ScoreError(f"no image of {bench.name} could be scored: " +
                         ", ".join(f"{n} {r}" for r, n in sorted(skipped.items())) + " (see per_image.jsonl)")
    if sr_files is not None:
        recs = map(json.loads, per_image.read_text(encoding="utf-8").splitlines())
        unused = len(set(sr_files) - {Path(r["sr_path"]).stem for r in recs if r.get("sr_path")})
        if unused:
            print(f"evalkit: {unused} image(s) in --sr-dir match no item of {bench.name}", file=sys.stderr)

    values: dict = {}
    for name, m in metrics.items():
        values.update(m.compute())
        why = getattr(m, "why_null", lambda: None)()
        if why:  # e.g. a text-mask metric on a benchmark without masks
            unavailable[name] = why
    for name, reason in unavailable.items():
        values[name] = None
    summary = {
        "bench": bench.name, "bench_info": bench.info, "images": n_scored, "skipped": n_skipped,
        "skipped_reasons": dict(sorted(skipped.items())),
        "model": cfg.model or f"(outputs from {cfg.sr_dir})",
        "weights": getattr(model, "weights_info", None) if model is not None else None,
        "scale": identity["scale"],
        "protocol": protocol.to_dict(),
        "metrics": values,
        "unavailable": unavailable,
        "settings": {name: m.settings() for name, m in metrics.items()},
        "ocr_engine": cfg.ocr_engine,
        "ocr_engine_settings": identity["ocr_engine"],
        "hr_ocr_cache": hr_cache.info() if hr_cache else None,
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()},
        "seconds": round(time.perf_counter() - t0, 2),
        "versions": versions(),
    }
    write_json_atomic(out / "summary.json", summary)
    from evalkit.report import write_reports

    write_reports(out, summary, bench_reopen=lambda: _open(cfg, protocol), worst=cfg.report_worst)
    return summary


def _read_identity(out: Path) -> dict | None:
    p = out / "run.json"
    return json.loads(p.read_text(encoding="utf-8")) if p.is_file() else None

