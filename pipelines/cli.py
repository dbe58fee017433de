"""Command lines: ``synth`` (build, list, inspect, export) and ``evalkit`` (list, weights, score,
protocols, datasets, compare).

They live here, on the top floor, because ``synth build`` runs its stages on Ray and only
``pipelines`` imports Ray. Exit codes:

- 0: done. 1: a bug — any exception that is not the project's own, shown with its traceback.
- 2: a usage error — a ``TextsrError`` (unknown recipe key, bad ``--set`` value, missing dataset
  root, unknown name, bad option), printed as one line (``TEXTSR_DEBUG=1`` shows the traceback);
  argparse's own errors exit 2 too.
- 3: ``synth build`` finished but the corpus is incomplete (keys that failed every attempt).
- 130 / 143: interrupted by SIGINT (Ctrl-C) / SIGTERM. Both take the same path: finished shards
  (and finished images of ``evalkit score``) are kept, a partial shard is removed, Ray is shut
  down, one message is printed; ``--resume`` continues.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from models.errors import TextsrError

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

EXIT_BUG, EXIT_USAGE, EXIT_INCOMPLETE, EXIT_SIGINT, EXIT_SIGTERM = 1, 2, 3, 130, 143


class UsageError(TextsrError, ValueError):
    """A command-line option that cannot be used as given; the message names it and the fix."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised as an interrupt so a terminated run cleans up exactly like Ctrl-C."""


_sigterm_seen = False


def _on_sigterm(signum, frame):
    global _sigterm_seen
    # remembered apart from the exception: Ray's blocking calls turn any KeyboardInterrupt raised
    # inside them into a plain one, losing the subclass
    _sigterm_seen = True
    # a second SIGTERM during the clean-up ends the process at once, like a second Ctrl-C
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    raise Terminated()


@contextlib.contextmanager
def _sigterm_as_interrupt():
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread (e.g. called from a library)
        return
    global _sigterm_seen
    _sigterm_seen = False
    prev = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, prev)


_RESUME_HINT = {"build": "finished shards are kept — continue with --resume",
                "score": "finished images are kept — continue with --resume"}


def _run(prog: str, fn, args) -> int:
    """Run one subcommand. Only the project's own errors become one-line messages (exit 2); any
    other exception propagates with its traceback (exit 1): it is a bug, and hiding it would make a
    failed run look like a usage mistake."""
    cmd = getattr(args, "cmd", "")
    try:
        with _sigterm_as_interrupt():
            return fn(args) or 0
    except KeyboardInterrupt as e:
        term = isinstance(e, Terminated) or _sigterm_seen
        hint = _RESUME_HINT.get(cmd)
        print(f"{prog} {cmd}: {'terminated (SIGTERM)' if term else 'interrupted'}" + (f"; {hint}" if hint else ""),
              file=sys.stderr)
        return EXIT_SIGTERM if term else EXIT_SIGINT
    except TextsrError as e:
        if os.environ.get("TEXTSR_DEBUG"):
            raise  # the full traceback, for bug reports
        print(f"{prog}: error: {_one_line(e)}", file=sys.stderr)
        return EXIT_USAGE


def _one_line(e: BaseException) -> str:
    msg = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
    return msg


def _positive(flag: str):
    def check(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if v < 1:
            raise argparse.ArgumentTypeError(f"must be at least 1, got {v}")
        return v
    check.__name__ = flag  # argparse names the type in some messages
    return check


def _not_a_file(path: str, flag: str) -> Path:
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise UsageError(f"{flag} {p} is a file; give a directory")
    return p


# -- synth ---------------------------------------------------------------------------------------
def _cmd_build(a) -> int:
    from models.datasets import load_catalog
    from pipelines.build import build
    from pipelines.executors import LocalExecutor
    from synth.factory import check_recipe
    from synth.inspect import missing_summary
    from synth.recipe import load_recipe
    from synth.shards import read_manifest

    from models.files import is_url

    out = a.out if is_url(a.out) else _not_a_file(a.out, "--out")
    recipe = _absolute_verdicts(load_recipe(a.recipe, a.set))
    catalog = load_catalog(a.datasets)
    check_recipe(recipe, catalog)
    if a.executor == "local":
        ex = LocalExecutor(recipe, catalog=catalog, num_threads=a.threads)
    else:
        from pipelines.ray_executor import RayExecutor

        ex = RayExecutor(recipe, catalog=catalog, workers=a.workers, address=a.address,
                         num_threads=a.threads or 1)
    if a.resume and read_manifest(out) is None:
        print(f"synth: no build in {out} to resume; starting a new one", file=sys.stderr)
    if a.verify and not a.resume:
        raise UsageError("--verify re-hashes the finished shards of a build being resumed; add --resume")
    m = build(recipe, out, a.num, executor=ex, resume=a.resume, overwrite=a.overwrite, verify=a.verify,
              progress=not a.no_progress, max_errors=a.max_errors)
    c = m["counts"]
    print(f"wrote {c['kept']} samples in {len(m['shards'])} shard(s) to {str(out).rstrip('/')}/shards; "
          f"manifest {str(out).rstrip('/')}/manifest.json")
    if not m["complete"]:
        print(f"synth: build incomplete: {missing_summary(m)}", file=sys.stderr)
        return EXIT_INCOMPLETE
    return 0


def _absolute_verdicts(recipe):
    """``backgrounds.verdicts`` as an absolute path: workers read it themselves, from their own
    working directory (the recipe hash leaves this key out, so nothing else changes)."""
    import dataclasses

    v = recipe.backgrounds.verdicts
    if not v or "://" in v:
        return recipe
    bg = dataclasses.replace(recipe.backgrounds, verdicts=str(Path(v).expanduser().resolve()))
    return dataclasses.replace(recipe, backgrounds=bg)


def _cmd_prefilter(a) -> int:
    from models.datasets import load_catalog
    from pipelines.prefilter import prefilter
    from synth.recipe import load_recipe

    if Path(a.out).is_dir():
        raise UsageError(f"--out {a.out} is a directory; give the verdicts file (.jsonl or .parquet)")
    recipe = load_recipe(a.recipe, a.set)
    s = prefilter(recipe, a.source or None, a.out, catalog=load_catalog(a.datasets), workers=a.workers,
                  address=a.address, resume=a.resume, progress=not a.no_progress)
    counts = ", ".join(f"{k} {v}" for k, v in sorted(s["counts"].items()))
    rate = f"{s['images_per_s']:.2f} images/s" if s["images_per_s"] else "nothing left to OCR"
    print(f"wrote verdicts of {s['images']} images to {s['out']} ({counts}; {rate}). Use it with "
          f"--set backgrounds.verdicts={s['out']}")
    return 0


def _cmd_harvest(a) -> int:
    from models.datasets import load_catalog
    from models.files import is_url
    from pipelines.harvest import harvest_source
    from synth.factory import check_harvest_settings
    from synth.recipe import load_recipe

    recipe = load_recipe(a.recipe, a.set)
    check_harvest_settings(recipe)
    out = a.out if is_url(a.out) else str(_not_a_file(a.out, "--out"))
    catalog = load_catalog(a.datasets)
    if a.executor == "local":
        from pipelines.executors import LocalExecutor

        ex = LocalExecutor(recipe, catalog=catalog, num_threads=a.threads)
    else:
        from pipelines.ray_executor import RayExecutor

        ex = RayExecutor(recipe, catalog=catalog, workers=a.workers, address=a.address, num_threads=a.threads or 1)
    mine = [s for s in recipe.text.crops.sources if a.source in (s.name, s.path)]
    try:
        s = harvest_source(recipe, mine[0] if mine else a.source, out, run_blocks=ex.run_blocks, catalog=catalog,
                           num_threads=ex.num_threads, progress=not a.no_progress)
    finally:
        ex.close()
    counts = ", ".join(f"{k} {v}" for k, v in s["counts"].items())
    print(f"harvested {s['kept']} text crops from {s['images']} images into {out} ({counts}; "
          f"cache hits {s['cache']['hits']}, computed {s['cache']['misses']})")
    return 0


def _cmd_list(a) -> int:
    from models.caption import list_captioners
    from models.ocr import list_ocr
    from models.seg import list_segmenters
    from models.sr import list_sr
    from synth.degrade import PRESETS
    from synth.recipe import list_recipes

    stages = ["background (text-free HR crops, OCR-rejected if text)", "render (wordfreq + fonts)",
              "crop-source (CTR LMDB / folder+labels / skimage page lines)", "segment", "ocr-filter",
              "upscale", "paste", "degrade", "distort (glyph: text-distorted variants)",
              "guidance (glyph: positions, prompts, LR OCR, caption)", "write (webdataset shards)"]
    for title, items in (("recipes", list_recipes()), ("stages", stages), ("ocr engines", list_ocr()),
                         ("segmenters", list_segmenters()), ("captioners", list_captioners()),
                         ("degradation presets", sorted(PRESETS)), ("upscale models", list_sr())):
        print(f"{title}:")
        for it in items:
            print(f"  {it}")
    return 0


def _cmd_inspect(a) -> int:
    from synth.inspect import contact_sheet, summary_lines

    _not_a_file(a.out, "synth inspect:")
    if a.png and Path(a.png).is_dir():
        raise UsageError(f"--png {a.png} is a directory; give the contact sheet's file name")
    for line in summary_lines(Path(a.out)):
        print(line)
    png = contact_sheet(Path(a.out), Path(a.png) if a.png else Path(a.out) / "contact_sheet.png", n=a.n)
    print(f"contact sheet: {png}")
    return 0


def _cmd_export(a) -> int:
    from synth.export import export

    _not_a_file(a.out, "synth export:")
    dest, n = export(Path(a.out), a.layout, Path(a.dest) if a.dest else None)
    print(f"exported {n} samples to {dest} ({a.layout} layout)")
    return 0


def synth_main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="synth", description="Build synthetic text-aware SR corpora.")
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build a corpus as webdataset shards",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="exit codes: 0 complete (kept == --num); 1 a bug (traceback; finished shards kept); "
                              "2 usage error;\n3 finished but incomplete (keys that failed every attempt: "
                              "see the manifest); 130 SIGINT, 143 SIGTERM\n(finished shards kept, "
                              "continue with --resume)")
    b.add_argument("--recipe", default="ftsr", help="built-in recipe name or a YAML file (default ftsr)")
    b.add_argument("--num", type=_positive("--num"), required=True, help="number of samples")
    b.add_argument("--out", required=True,
                   help="output directory (shards/, manifest.json): a local or shared path, or an fsspec URL "
                        "(s3://bucket/corpus, gs://...) that every worker can write")
    b.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe key, e.g. --set degrade.scale=8 (repeatable)")
    b.add_argument("--workers", type=_positive("--workers"), default=None,
                   help="shards built at once, one Ray task each (default: the cluster's CPUs; with no --address, "
                        "this machine's)")
    b.add_argument("--address", default=None, help="join an existing Ray cluster (e.g. ray://host:10001 or host:6379)")
    b.add_argument("--executor", choices=("ray", "local"), default="ray",
                   help="ray (default; local Ray unless --address) or local (this process, no Ray)")
    b.add_argument("--threads", type=_positive("--threads"), default=None,
                   help="threads per worker for OpenCV/onnxruntime (Ray default 1)")
    b.add_argument("--max-errors", type=_positive("--max-errors"), default=3,
                   help="stop the build at the N-th unexpected exception in a sample (a bug, shown with its "
                        "traceback; exit 1). Rejected inputs are counted, never fatal (default 3)")
    b.add_argument("--datasets", default=None, help="extra datasets.yaml (adds/overrides entries)")
    b.add_argument("--resume", action="store_true",
                   help="continue an interrupted build in --out (trusts the manifest's finished shards)")
    b.add_argument("--verify", action="store_true", help="with --resume: re-hash every finished shard first")
    b.add_argument("--overwrite", action="store_true", help="replace a previous build in --out")
    b.add_argument("--no-progress", action="store_true")
    b.set_defaults(fn=_cmd_build)
    pf = sub.add_parser("prefilter", help="OCR every background image once (Ray job): a verdicts file for "
                                          "backgrounds.verdicts, so builds never OCR a background")
    pf.add_argument("--source", action="append", default=[], metavar="NAME",
                    help="a background source (recipe source name/path, datasets.yaml name, skimage-photos); "
                         "repeatable; default: every background source of the recipe")
    pf.add_argument("--out", required=True, help="verdicts file: .parquet, or JSONL for any other suffix")
    pf.add_argument("--recipe", default="ftsr", help="recipe whose OCR engine and background settings apply")
    pf.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a recipe key")
    pf.add_argument("--workers", type=_positive("--workers"), default=None,
                    help="Ray tasks at once (default: the cluster's CPUs)")
    pf.add_argument("--address", default=None, help="join an existing Ray cluster (HOST:PORT)")
    pf.add_argument("--resume", action="store_true", help="continue from <out>.partial.jsonl")
    pf.add_argument("--datasets", default=None, help="extra datasets.yaml (adds/overrides entries)")
    pf.add_argument("--no-progress", action="store_true")
    pf.set_defaults(fn=_cmd_prefilter)
    hv = sub.add_parser("harvest", help="cut OCR-confirmed text crops from a photo folder (what a build does "
                                        "for a harvest: true crop source), into a folder")
    hv.add_argument("--source", required=True, metavar="NAME",
                    help="photos: a recipe crop source name/path, a datasets.yaml image-folder, or a folder")
    hv.add_argument("--out", required=True, help="harvest folder (crops.jsonl, images.jsonl, crops/, masks/)")
    hv.add_argument("--recipe", default="ftsr", help="recipe whose OCR engine, segmenter, crop checks and "
                                                    "text.crops.harvest settings apply")
    hv.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a recipe key")
    hv.add_argument("--executor", choices=("ray", "local"), default="ray")
    hv.add_argument("--workers", type=_positive("--workers"), default=None, help="Ray tasks at once")
    hv.add_argument("--address", default=None, help="join an existing Ray cluster (HOST:PORT)")
    hv.add_argument("--threads", type=_positive("--threads"), default=None)
    hv.add_argument("--datasets", default=None, help="extra datasets.yaml (adds/overrides entries)")
    hv.add_argument("--no-progress", action="store_true")
    hv.set_defaults(fn=_cmd_harvest)
    sub.add_parser("list", help="recipes, stages, engines, presets").set_defaults(fn=_cmd_list)
    i = sub.add_parser("inspect", help="counts and a contact sheet of a build")
    i.add_argument("out")
    i.add_argument("--png", default=None, help="contact sheet path (default <out>/contact_sheet.png)")
    i.add_argument("-n", type=_positive("-n"), default=8, help="samples on the sheet")
    i.set_defaults(fn=_cmd_inspect)
    e = sub.add_parser("export", help="write a build in another project's folder layout")
    e.add_argument("out")
    e.add_argument("--layout", required=True, choices=("tadisr", "vosr"))
    e.add_argument("--dest", default=None, help="destination (default <out>/<layout>)")
    e.set_defaults(fn=_cmd_export)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return _run("synth", a.fn, a)


# -- evalkit -------------------------------------------------------------------------------------
def _model_options(items: list[str]) -> dict:
    import yaml

    out = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--model-opt {item!r}: expected KEY=VALUE, e.g. timestep=200")
        try:
            out[key.strip().replace("-", "_")] = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError:
            raise UsageError(f"--model-opt {item!r}: the value is not valid YAML") from None
    return out


def _metric_options(items: list[str]) -> dict[str, dict]:
    """``METRIC.KEY=VALUE`` items (values parsed as YAML) -> ``{metric: {key: value}}``."""
    import yaml

    out: dict[str, dict] = {}
    for item in items:
        lhs, sep, raw = item.partition("=")
        metric, dot, key = lhs.strip().partition(".")
        if not sep or not dot or not metric.strip() or not key.strip():
            raise UsageError(f"--metric-opt {item!r}: expected METRIC.KEY=VALUE, e.g. ssim.color_space=ycbcr")
        try:
            value = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError:
            raise UsageError(f"--metric-opt {item!r}: the value is not valid YAML") from None
        out.setdefault(metric.strip(), {})[key.strip().replace("-", "_")] = value
    return out


def _cmd_elist(a) -> int:
    from models.ocr import list_ocr
    from models.seg import list_segmenters
    from models.sr import list_sr

    for title, items in (("sr models", list_sr()), ("ocr engines", list_ocr()), ("segmenters", list_segmenters())):
        print(f"{title}:")
        for it in items:
            print(f"  {it}")
    return 0


def _cmd_weights(a) -> int:
    from models.inventory import weights_rows

    rows = weights_rows(a.model, allow_download=a.allow_download)
    if not rows:
        raise UsageError(f"no component matches {a.model!r} (see `evalkit list`)")
    width = max(len(r.component) for r in rows)
    for r in rows:
        print(f"{r.component:<{width}}  {r.file}  [{r.status}]")
        print(f"{'':<{width}}    source: {r.source}" + (f"\n{'':<{width}}    at: {r.path}" if r.path else "")
              + (f"\n{'':<{width}}    fetch: {r.fetch}" if r.fetch else ""))
    missing = sum(r.status == "missing" for r in rows)
    print(f"{len(rows)} file(s), {missing} missing" + ("; fetch them with --allow-download (or the commands above)" if missing else ""))
    return 0


def _cmd_score(a) -> int:
    from evalkit.runner import ScoreConfig, score

    cfg = ScoreConfig(out=a.out, model=a.model, weights=a.weights, bench=a.bench, sr_dir=a.sr_dir, mask_dir=a.mask_dir,
                      hr_dir=a.hr_dir, lr_dir=a.lr_dir, scale=a.scale,
                      metrics=[m for m in (a.metrics or "").split(",") if m], limit=a.limit, device=a.device,
                      batch_size=a.batch_size, crop_border=a.crop_border, resume=a.resume, strict=a.strict,
                      ocr_engine=a.ocr, allow_download=a.allow_download, progress=not a.no_progress,
                      datasets=a.datasets, lr_preset=a.lr_preset, lr_seed=a.lr_seed, skip_bad=a.skip_bad,
                      model_options=_model_options(a.model_opt), protocol=a.protocol,
                      metric_options=_metric_options(a.metric_opt))
    from evalkit.compare import headline_keys

    executor = None
    if a.workers or a.address or a.gpus_per_worker:
        from pipelines.score_ray import RayScoring

        executor = RayScoring(cfg, workers=a.workers, address=a.address, gpus_per_worker=a.gpus_per_worker or 0.0)
    s = score(cfg, executor)
    shown = ", ".join(f"{k} {'null' if s['metrics'][k] is None else format(s['metrics'][k], '.4f')}"
                      for k in headline_keys(s))
    print(f"{s['model']} on {s['bench']} ({s['images']} images): {shown}")
    print(f"run: {a.out} (summary.json, per_image.jsonl, report.md, report.html)")
    return 0


def _cmd_protocols(a) -> int:
    from evalkit.protocols import get_protocol, list_protocols

    for name in list_protocols():
        p = get_protocol(name)
        print(f"{p.name} (version {p.version}): {p.description}")
        for metric, opts in p.metrics.items():
            shown = ", ".join(f"{k}={v}" for k, v in (opts or {}).items())
            print(f"  {metric}" + (f"  ({shown})" if shown else ""))
    return 0


def _cmd_datasets(a) -> int:
    from evalkit.catalog import status_rows
    from models.datasets import data_root, load_catalog

    rows = status_rows(load_catalog(a.datasets))
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        print(f"{r['name']:<{width}}  {r['format']:<13} {r['status']}")
    print(f"{sum(r['status'].startswith('found') for r in rows)}/{len(rows)} found under TEXTSR_DATA={data_root()}")
    return 0


def _cmd_compare(a) -> int:
    from evalkit.compare import compare

    md, png = compare(a.runs, Path(a.out) if a.out else None)
    print(md.read_text(encoding="utf-8"), end="")
    print(f"table: {md}\nplot: {png}")
    return 0


def evalkit_main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="evalkit", description="Score SR models and outputs on text-rich benchmarks.")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="registered SR models, OCR engines, segmenters").set_defaults(fn=_cmd_elist)
    w = sub.add_parser("weights", help="each model's weights files: present, verified, or how to fetch them")
    w.add_argument("--model", default=None, help="a name or glob, e.g. realesrgan-x4plus or 'realesr*'")
    w.add_argument("--allow-download", action="store_true", help="download missing files from their official source")
    w.set_defaults(fn=_cmd_weights)
    sc = sub.add_parser("score", help="score a model on a benchmark, or a folder of SR outputs")
    sc.add_argument("--model", help="SR model name (evalkit list); omit with --sr-dir")
    sc.add_argument("--weights", help="explicit checkpoint path for --model")
    sc.add_argument("--model-opt", action="append", default=[], metavar="KEY=VALUE",
                    help="an option of --model, repeatable (values parsed as YAML), e.g. timestep=200, "
                         "prompt=none, base=/path/to/sd-2-1-base, lambda_sem=0.5, tile=64")
    sc.add_argument("--bench", help="a synth corpus directory or a datasets.yaml benchmark name")
    sc.add_argument("--sr-dir", help="folder of SR outputs, paired with --hr-dir by file stem")
    sc.add_argument("--mask-dir", help="with --sr-dir: predicted text masks made elsewhere (gray PNG, named like "
                                       "the outputs), scored by mask_iou / mask_f1")
    sc.add_argument("--hr-dir", help="folder of HR references")
    sc.add_argument("--lr-dir", help="folder of LR inputs (model mode on folders; shown in reports)")
    sc.add_argument("--out", required=True, help="run directory")
    sc.add_argument("--scale", type=int, help="SR scale (default: the benchmark's)")
    sc.add_argument("--metrics", help="comma-separated metric names (default: psnr,ssim,lpips,niqe,ocr_a,ocr_f1,…)")
    sc.add_argument("--limit", type=int, help="score only the first N images")
    sc.add_argument("--device", help="cpu, cuda, cuda:1 … (default: CUDA when available)")
    sc.add_argument("--batch-size", type=int, default=4)
    sc.add_argument("--crop-border", type=int, default=None,
                    help="pixels cropped from each side for PSNR/SSIM (default: the protocol's; 0 = OSEDiff/CODSR; "
                         "scale = basicsr habit)")
    from evalkit.protocols import list_protocols

    sc.add_argument("--protocol", default=None,
                    help=f"evaluation protocol: {', '.join(list_protocols())} (default basicsr); see evalkit protocols")
    sc.add_argument("--metric-opt", action="append", default=[], metavar="METRIC.KEY=VALUE",
                    help="an option of one metric, repeatable (values parsed as YAML), e.g. ssim.color_space=ycbcr")
    sc.add_argument("--ocr", default=None, help="OCR engine (evalkit list; default: the protocol's engine whose "
                    "weights are found, else rapidocr-ppocrv4)")
    sc.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    sc.add_argument("--workers", type=_positive("--workers"), default=None,
                    help="split the benchmark across N Ray actors, each holding the model once (local Ray, or "
                         "the cluster of --address; default with --address: one per CPU, or per GPU with "
                         "--gpus-per-worker). Rows and metrics equal the single-process run's")
    sc.add_argument("--address", default=None, help="run on an existing Ray cluster (HOST:PORT of `ray start --head`)")
    sc.add_argument("--gpus-per-worker", type=float, default=None,
                    help="GPUs per actor (e.g. 1 or 0.5): the model, metrics and OCR (onnxruntime CUDA) run there")
    sc.add_argument("--strict", action="store_true", help="a metric whose weights are missing is an error, not null")
    sc.add_argument("--allow-download", action="store_true", help="let metrics and models download their weights")
    sc.add_argument("--no-progress", action="store_true")
    sc.add_argument("--datasets", help="extra datasets.yaml (adds/overrides entries)")
    sc.add_argument("--lr-preset", default=None,
                    help="HR-only benchmarks: degradation preset of their fixed LR (default: the protocol's, else "
                         "matlab-bicubic)")
    sc.add_argument("--lr-seed", type=int, default=0, help="HR-only benchmarks: seed of their fixed LR")
    sc.add_argument("--skip-bad", action="store_true", help="log and skip malformed annotation lines instead of failing")
    sc.set_defaults(fn=_cmd_score)
    sub.add_parser("protocols", help="evaluation protocols: name, version, description, metrics"
                   ).set_defaults(fn=_cmd_protocols)
    ds = sub.add_parser("datasets", help="every datasets.yaml entry and whether it is usable here")
    ds.add_argument("--datasets", help="extra datasets.yaml (adds/overrides entries)")
    ds.set_defaults(fn=_cmd_datasets)
    cp = sub.add_parser("compare", help="table and OCR-A vs LPIPS/PSNR plot of several runs")
    cp.add_argument("runs", nargs="+")
    cp.add_argument("--out", help="where to write compare.md and the plot (default: <first run>/../compare)")
    cp.set_defaults(fn=_cmd_compare)
    a = p.parse_args(argv)
    return _run("evalkit", a.fn, a)


def main_synth() -> None:
    sys.exit(synth_main())


def main_evalkit() -> None:
    sys.exit(evalkit_main())
