"""``evalkit score``: SR a benchmark with a model (or take a folder of outputs), score every image,
write the run directory.

Run directory: ``sr/<key>.png`` (model mode), ``per_image.jsonl`` (one line per image with every
metric, append-only), ``state.json`` (+ ``state-<n>.npz`` for array states such as FID's: the metric
accumulators over the first ``done`` rows, for ``--resume``; rows after them are scored again),
``summary.json``, ``report.md`` and ``report.html``. OCR of HR images is cached by pixels and
engine identity under ``$TEXTSR_CACHE`` (default ``~/.cache/textsr``), so a second model does not
redo it.

A run is scored in batches of ``batch_size`` keys by :class:`Scorer` — in this process, or in Ray
actors (``pipelines.score_ray``) — and committed in key order, so both give the same run.
"""
from __future__ import annotations

import json
import sys
import time
import copy
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

from evalkit.benches import Bench, BenchError, folder_pairs, open_bench, read_rgb
from evalkit.metrics.base import MetricUnavailable
from evalkit.sample import EvalSample
from models.cache import cache_dir, cache_key
from models.files import CostThrottle, write_json_atomic
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
    ocr_engine: str | None = None      # None: the protocol's preferred engine whose weights resolve, else rapidocr-ppocrv4
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


def image_digest(img: np.ndarray) -> str:
    """sha256 of a decoded image's pixels and shape: the same pixels give the same key wherever
    they were read from (a folder, a shard, a synthesised LR)."""
    import hashlib

    a = np.ascontiguousarray(img)
    return hashlib.sha256(f"{a.dtype}{a.shape}".encode() + a.tobytes()).hexdigest()


class HROCRCache:
    """OCR lines of HR images, keyed by the HR pixels (:func:`image_digest`) in one JSONL file per
    engine configuration (``engine.identity()`` + :data:`HR_OCR_CACHE_VERSION`), appended as they
    are read. An edited HR image, another engine setting or a new cache version never meets an old
    reading; the same image in two benchmarks is read once."""

    def __init__(self, engine):
        ident = engine.identity()
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
        "ocr_engine": engine.identity(),
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


class Scorer:
    """Everything one process needs to score images of a run: the benchmark (opened by itself, so
    any process can load any batch by key), the model, the OCR engine and the metrics. Built once
    per process — the single-process run builds one, ``evalkit score --workers N`` one per Ray actor
    — and fed batches of keys by :meth:`run`. ``device`` overrides ``cfg.device`` (a GPU actor).
    ``with_model=False``: the driver of a split run, which only merges and reports (it takes the
    workers' word on the model; ``masks`` then says whether the model predicts text masks).
    ``threads``: CPU threads for the OCR engine (a Ray actor holds one CPU: 1; None: all)."""

    def __init__(self, cfg: ScoreConfig, device: str | None = None, with_model: bool = True,
                 masks: bool | None = None, threads: int | None = None):
        from models.ocr import create_ocr

        if device is not None:
            cfg = replace(cfg, device=device)
        self.cfg = cfg
        self.protocol = _protocol(cfg)
        try:
            self.bench = _open(cfg, self.protocol)
        except BenchError as e:
            raise ScoreError(str(e)) from None
        self.sr_files = _sr_files(cfg)
        self.model = _build_model(cfg, self.bench) if cfg.model and with_model else None
        if not cfg.model and self.bench.keys and not cfg.sr_dir:
            raise ScoreError("no SR to score: give --model, or --sr-dir with the outputs")
        self.mask_files = _mask_files(cfg)
        self.model_masks = (self.model is not None and "text_mask" in self.model.aux_outputs) if masks is None else masks
        from evalkit.protocols import announce_ocr_choice, choose_ocr_engine

        self.ocr_engine, self.ocr_choice = choose_ocr_engine(self.protocol, cfg.ocr_engine, cfg.allow_download)
        announce_ocr_choice(self.ocr_choice)
        ocr_kw = _ocr_device(self.ocr_engine, cfg.device)
        if threads:
            ocr_kw["num_threads"] = threads
        self.engine = create_ocr(self.ocr_engine, **ocr_kw)
        self.metrics, self.unavailable = _build_metrics(cfg, self.engine, self.protocol,
                                                        masks=self.model_masks or self.mask_files is not None)
        self.need = set().union(*(m.needs for m in self.metrics.values())) if self.metrics else set()
        self.hr_cache = HROCRCache(self.engine) if "ocr_hr" in self.need else None
        self.identity = run_identity(cfg, self.bench, self.model, self.metrics, self.unavailable, self.protocol,
                                     self.engine)

    def run(self, keys: list[str], out: str) -> dict:
        """Score the images of ``keys`` (in order). Returns ``rows`` (one per-image record each),
        ``files`` (``{path under out: PNG bytes}``: SR outputs and predicted masks of a model run),
        ``state`` (each metric's accumulator over exactly these images — a delta the caller merges)
        and ``skipped`` (reason -> n). Nothing is written here: the caller commits batches in order."""
        from synth.imageio import encode_png

        for m in self.metrics.values():
            m.reset()
        out = Path(out)
        items = list(self.bench.load(keys))
        runnable = [it for it in items if not it.error]  # the model sees only the readable LR
        model_out = {}  # key -> (SR, auxiliary maps, conditioning record)
        if self.model is not None and runnable:
            lrs = [it.lr for it in runnable]
            res = self.model.upscale_images_records(lrs, aux=self.model_masks)
            model_out = {it.key: r for it, r in zip(runnable, res)}
        rows, files, skipped = [], {}, {}
        hits0 = (self.hr_cache.hits, self.hr_cache.misses) if self.hr_cache else (0, 0)
        for it in items:
            rec = {"key": it.key}
            try:
                if it.error:
                    raise _Skip(it.error_reason or "unreadable", it.error)
                pred_mask = None
                if self.model is not None:
                    (sr, aux, cond), sr_path = model_out[it.key], out / "sr" / f"{it.key}.png"
                    files[f"sr/{it.key}.png"] = encode_png(sr)
                    if cond is not None:  # what the model conditioned this image on (OCR prompts, caption)
                        rec["conditioning"] = cond
                    if "text_mask" in aux:
                        pred_mask = aux["text_mask"]
                        rec["mask_path"] = str(out / "mask" / f"{it.key}.png")
                        files[f"mask/{it.key}.png"] = encode_png(np.round(pred_mask * 255).astype(np.uint8))
                else:
                    sr, sr_path = _read_sr(it, self.sr_files)
                    if self.mask_files is not None:
                        pred_mask, rec["mask_path"] = _read_mask(it, self.mask_files, sr.shape[:2])
                rec["sr_path"] = str(sr_path)
                if it.hr_path:
                    rec["hr_path"] = str(it.hr_path)
                if it.meta.get("lr_path"):
                    rec["lr_path"] = str(it.meta["lr_path"])
                if it.hr is not None and sr.shape != it.hr.shape:
                    raise _Skip("size-mismatch", f"SR {sr.shape[1]}x{sr.shape[0]} vs HR {it.hr.shape[1]}x{it.hr.shape[0]}")
            except _Skip as e:
                if self.cfg.strict:
                    raise ScoreError(f"{it.key}: {e} (drop --strict to skip and count such images)") from None
                rec.update({"skipped": e.reason, "error": e.detail})
                skipped[e.reason] = skipped.get(e.reason, 0) + 1
                print(f"evalkit: skipped {it.key}: {e}", file=sys.stderr)
            else:
                sample = EvalSample(key=it.key, sr=sr, hr=it.hr, lr=it.lr, mask=it.mask, texts=it.texts,
                                    pred_mask=pred_mask, extra={"sr_path": str(sr_path),
                                                                "hr_path": str(it.hr_path) if it.hr_path else None})
                # HR OCR is the reference of OCR metrics only where the benchmark has no annotations
                if self.hr_cache is not None and it.hr is not None and it.texts is None:
                    sample.ocr_hr = self.hr_cache.get(it.hr, self.engine)
                if "ocr_sr" in self.need:
                    sample.ocr_sr = self.engine.readtext(sr)
                    rec["ocr_sr"] = [ln.text for ln in sample.ocr_sr]
                for m in self.metrics.values():
                    rec.update(m.update(sample))
            rows.append(rec)
        return {"rows": rows, "files": files, "skipped": skipped,
                "state": {name: m.state() for name, m in self.metrics.items()},
                "hr_ocr_cache": None if self.hr_cache is None else
                {**self.hr_cache.info(), "hits": self.hr_cache.hits - hits0[0], "misses": self.hr_cache.misses - hits0[1]}}


def _ocr_device(engine: str, device: str | None) -> dict:
    """``{"device": ...}`` for an OCR engine that takes one (the RapidOCR engines: onnxruntime's CUDA
    provider) when the run is on a GPU; {} otherwise (PaddleOCR picks its own device)."""
    import inspect

    from models.ocr import OCR_ENGINES

    if not (device and device.startswith("cuda")):
        return {}
    return {"device": device} if "device" in inspect.signature(OCR_ENGINES.get(engine)).parameters else {}


class LocalScoring:
    """Batches scored one after another in this process (the default)."""

    workers = 1

    def __init__(self, cfg: ScoreConfig):
        self.cfg = cfg
        self._queue: list = []

    def start(self) -> dict:
        self.scorer = Scorer(self.cfg)
        return self.scorer.identity

    def local_scorer(self) -> Scorer:
        return self.scorer

    def describe(self) -> dict:
        return {"executor": "local", "workers": 1}

    def submit(self, tag: int, keys: list[str], out: str) -> None:
        self._queue.append((tag, keys, out))

    def next_done(self, timeout: float | None = None):
        tag, keys, out = self._queue.pop(0)
        return tag, self.scorer.run(keys, out)

    def close(self) -> None:
        self._queue.clear()




def _save_state(out: Path, done: int, skipped: dict, identity: dict, acc: dict) -> None:
    """``state.json`` (counts, identity, each metric's plain-data state) and, for array-valued
    state (FID's feature statistics), ``state-<done>.npz`` named in it: written first, so a
    ``state.json`` never names arrays that are not all there. Older ``.npz`` files are removed."""
    from models.files import atomic_path

    plain, arrays = {}, {}
    for name, m in acc.items():
        st = m.state()
        plain[name] = {k: v for k, v in st.items() if not isinstance(v, np.ndarray)}
        arrays.update({f"{name}/{k}": v for k, v in st.items() if isinstance(v, np.ndarray)})
    npz = None
    if arrays:
        npz = f"state-{done}.npz"
        with atomic_path(out / npz) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)
    write_json_atomic(out / "state.json", {"done": done, "skipped": skipped, "identity": identity,
                                           "metrics_names": list(acc), "metrics": plain, "arrays": npz})
    for p in out.glob("state-*.npz"):
        if p.name != npz:
            p.unlink(missing_ok=True)


def _load_state(out: Path, st: dict, acc: dict) -> None:
    arrays = {}
    if st.get("arrays"):
        with np.load(out / st["arrays"]) as z:
            arrays = {k: z[k] for k in z.files}
    for name, plain in st["metrics"].items():
        extra = {k.split("/", 1)[1]: v for k, v in arrays.items() if k.split("/", 1)[0] == name}
        acc[name].load_state({**plain, **extra})


def score(cfg: ScoreConfig, executor=None) -> dict:
    """Score a run into ``cfg.out``. ``executor``: None (this process) or a
    ``pipelines.score_ray.RayScoring`` (actors that each hold the model once). Batches of
    ``batch_size`` keys are committed in key order whatever order they finish in — per-image rows
    appended, SR outputs written, metric states merged — so a split run writes exactly what the
    single-process run writes."""
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise ScoreError(f"--out {out} is a file; give a directory for the run")
    per_image = out / "per_image.jsonl"
    state_file = out / "state.json"
    if per_image.exists() and not cfg.resume:
        raise ScoreError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    if cfg.resume and not per_image.exists():
        print(f"evalkit: no run in {out} to resume; starting a new one", file=sys.stderr)
    executor = executor or LocalScoring(cfg)
    try:
        identity = executor.start()
        executor_info = executor.describe()
        scorer = executor.local_scorer()  # this process's: the accumulators, compute() and the report
        bench, protocol, metrics = scorer.bench, scorer.protocol, scorer.metrics
        unavailable = dict(scorer.unavailable)
        # workers that see other images or settings than the driver, which reads the same keys to
        # report (the model and its OCR device are the workers' alone)
        shared = ("bench", "sr_dir", "hr_dir", "lr_dir", "mask_dir", "protocol", "metrics")
        diff = _differences({k: scorer.identity[k] for k in shared}, {k: identity[k] for k in shared})
        if diff:
            raise ScoreError("the workers' run differs from the driver's: " + "; ".join(diff[:4]))
        acc = {}
        for name, m in metrics.items():
            a = copy.copy(m)  # shares the networks; reset() gives it its own accumulators
            a.reset()
            acc[name] = a

        out.mkdir(parents=True, exist_ok=True)
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
                _load_state(out, st, acc)
                n_done, skipped = st["done"], dict(st.get("skipped", {}))
                lines = per_image.read_text(encoding="utf-8").splitlines()[:n_done]  # rows after the state: redone
                per_image.write_text("".join(ln + "\n" for ln in lines), encoding="utf-8")
                done = {json.loads(ln)["key"] for ln in lines}
            else:
                per_image.unlink(missing_ok=True)  # killed before the first state was written: start over
        write_json_atomic(out / "run.json", identity)

        from tqdm import tqdm

        keys = [k for k in bench.keys if k not in done]
        bs = max(1, cfg.batch_size)
        batches = [keys[i:i + bs] for i in range(0, len(keys), bs)]
        bar = tqdm(total=len(bench.keys), initial=len(done), unit="img", desc="evalkit score", file=sys.stderr,
                   disable=not cfg.progress, dynamic_ncols=True)
        t0 = time.perf_counter()
        hr_cache_info = None
        waiting: dict[int, dict] = {}
        next_commit = next_submit = 0
        # the resume state after a committed batch when cheap (models.files.CostThrottle): every batch
        # at a few KB, every few seconds once it holds FID's two 2048² float64 sums; always at the end
        throttle = CostThrottle()
        window = 2 * executor.workers
        try:
            while next_commit < len(batches):
                while next_submit < len(batches) and next_submit < next_commit + window:
                    executor.submit(next_submit, batches[next_submit], str(out))
                    next_submit += 1
                got = executor.next_done(timeout=1.0)
                if got is None:
                    continue
                tag, res = got
                waiting[tag] = res
                while next_commit in waiting:  # commit in key order: the run is the same however it was split
                    res = waiting.pop(next_commit)
                    for rel, data in res["files"].items():
                        (out / rel).parent.mkdir(parents=True, exist_ok=True)
                        (out / rel).write_bytes(data)
                    with open(per_image, "a", encoding="utf-8") as f:
                        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in res["rows"])
                    for name, st in res["state"].items():
                        acc[name].merge_state(st)
                    for r, n in res["skipped"].items():
                        skipped[r] = skipped.get(r, 0) + n
                    if res["hr_ocr_cache"]:
                        c = res["hr_ocr_cache"]
                        hr_cache_info = {**c, "hits": c["hits"] + (hr_cache_info or {}).get("hits", 0),
                                         "misses": c["misses"] + (hr_cache_info or {}).get("misses", 0)}
                    n_done += len(res["rows"])
                    bar.update(len(res["rows"]))
                    next_commit += 1
                    if throttle.due():
                        with throttle.timing():
                            _save_state(out, n_done, skipped, identity, acc)
        finally:
            # what was committed is kept for --resume, also when interrupted or when a batch failed
            _save_state(out, n_done, skipped, identity, acc)
            bar.close()
    finally:
        executor.close()

    n_skipped = sum(skipped.values())
    n_scored = n_done - n_skipped
    if n_done and not n_scored:
        raise ScoreError(f"no image of {bench.name} could be scored: " +
                         ", ".join(f"{n} {r}" for r, n in sorted(skipped.items())) + " (see per_image.jsonl)")
    if scorer.sr_files is not None:
        recs = map(json.loads, per_image.read_text(encoding="utf-8").splitlines())
        unused = len(set(scorer.sr_files) - {Path(r["sr_path"]).stem for r in recs if r.get("sr_path")})
        if unused:
            print(f"evalkit: {unused} image(s) in --sr-dir match no item of {bench.name}", file=sys.stderr)

    values: dict = {}
    for name, m in acc.items():
        values.update(m.compute())
        why = getattr(m, "why_null", lambda: None)()
        if why:  # e.g. a text-mask metric on a benchmark without masks
            unavailable[name] = why
    for name, reason in unavailable.items():
        values[name] = None
    model = scorer.model
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
        "ocr_engine": scorer.ocr_engine, "ocr_engine_choice": scorer.ocr_choice,
        "ocr_engine_settings": identity["ocr_engine"],
        "hr_ocr_cache": hr_cache_info,
        "executor": executor_info,
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

