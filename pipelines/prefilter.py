"""``synth prefilter``: every background image's OCR verdict, computed once as a Ray job.

The item indices of each source are cut into blocks; one Ray task per block (``num_cpus=1``,
re-run by Ray when its worker or node dies) OCRs the block with :func:`synth.prefilter.check_item`
and returns its rows (small: a few texts per image). The driver keeps at most 2× workers blocks in
flight, appends each block's rows to ``<out>.partial.jsonl`` the moment it lands (any order, so a
slow block holds nothing up), and at the end writes ``out`` in item order, atomically, and removes
the partial file. A run that is stopped keeps its partial file; ``resume=True`` continues it.
"""
from __future__ import annotations

import json
import sys
import time
from collections import Counter
from dataclasses import asdict, replace
from pathlib import Path

import ray

from models.errors import TextsrError
from pipelines.ray_session import RaySession, get
from synth.prefilter import (
    VERDICTS,
    check_item,
    header_mismatch,
    json_line,
    make_header,
    ocr_identity,
    read_jsonl,
    relabel,
    source_identity,
    write_verdicts,
)
from synth.recipe import Recipe, SourceSpec


class PrefilterError(TextsrError, RuntimeError):
    """A prefilter run that cannot start or continue as asked; the message says what to do."""


def partial_path(out) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".partial.jsonl")


def prefilter(recipe: Recipe, source_name_or_spec, out, *, catalog=None, workers: int | None = None,
              address: str | None = None, block: int = 32, resume: bool = False, progress: bool = True) -> dict:
    """Write the verdicts file ``out`` for background sources of ``recipe``.

    Arguments (the command line ``synth prefilter`` maps onto them one to one):

    - ``recipe`` (``--recipe``, default ftsr, with ``--set k=v``): gives the OCR engine
      (``ocr_engine``), the OCR resize policy (``backgrounds.max_side_for_ocr``/``min_side_for_ocr``,
      which a build must share), the thresholds the ``verdict`` labels use (``hr_size``,
      ``ocr_min_score``; a build re-applies its own) and the sources to resolve names against.
    - ``source_name_or_spec`` (``--source NAME``, repeatable): None or [] = every background source
      of the recipe (one file for the recipe: what ``backgrounds.verdicts`` wants); a name (a recipe
      background source's name or path, a ``--datasets``/datasets.yaml name, ``skimage-photos``), a
      ``SourceSpec``, or a list of them.
    - ``out`` (``--out FILE``): ``.parquet`` → Parquet, anything else → JSONL. Progress goes to
      ``<out>.partial.jsonl`` until the run ends.
    - ``catalog`` (``--datasets F``): the dataset catalog (default: datasets.yaml lookup).
    - ``workers`` (``--workers N``): concurrent tasks; None = the cluster's CPUs. One CPU each.
    - ``address`` (``--address A``): join a running Ray cluster (see ``pipelines.ray_session``).
      Every node needs the datasets at the same paths and the same OCR model files (checked: a
      worker whose engine identity differs stops the run).
    - ``block``: images per task.
    - ``resume`` (``--resume``): continue from ``<out>.partial.jsonl`` (same recipe OCR settings and
      sources, else an error naming the field). Without it an existing partial file is an error,
      so hours of OCR are never dropped silently.
    - ``progress``: a tqdm bar (images, rate, ETA) on stderr.

    Returns ``{"out", "counts": {verdict: n}, "images", "resumed", "seconds", "images_per_s"}``
    (``images_per_s`` over the images OCR'd in this run)."""
    from models.ocr import create_ocr
    from synth.sources.images import open_source

    t0 = time.monotonic()
    if block < 1:
        raise PrefilterError(f"--block must be at least 1, got {block}")
    if workers is not None and workers < 1:
        raise PrefilterError(f"--workers must be at least 1, got {workers}")
    out = Path(out)
    if out.exists() and out.is_dir():
        raise PrefilterError(f"--out {out} is a directory; give a file (.jsonl or .parquet)")
    partial = partial_path(out)
    specs = _specs(recipe, source_name_or_spec)
    # resolve catalog names here: tasks then need no catalog, and every worker opens the same thing
    tasks_specs = [_resolved(s, catalog) for s in specs]
    sources = [open_source(s, want_labels=False) for s in tasks_specs]
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise PrefilterError(f"--source names the same source twice ({names})")
    engine = create_ocr(recipe.ocr_engine)
    header = make_header(recipe.backgrounds, [source_identity(s) for s in sources], engine.identity())
    ids = [[s.item_id(i) for i in range(len(s))] for s in sources]

    done: dict[str, dict] = {}
    if partial.exists():
        if not resume:
            raise PrefilterError(f"{partial} holds an interrupted run; pass --resume to continue it, "
                                 "or delete it to start again")
        old_header, done = read_jsonl(partial, torn_tail_ok=True)
        diff = header_mismatch(old_header, header)
        if diff:
            raise PrefilterError(f"{partial}: --resume with different settings: {diff}; use the same recipe, "
                                 f"--set values and sources, or delete {partial} to start again")
        known = {i for per in ids for i in per}
        # labels follow this run's thresholds (hr_size, ocr_min_score may have changed: no new OCR)
        done = {k: relabel(r, recipe.backgrounds) for k, r in done.items() if k in known}
        header["created"] = old_header.get("created", header["created"])
    # (re)write the partial file whole: a resumed one may end in a line a kill cut short
    write_verdicts(partial, header, list(done.values()))

    todo = [(k, idx[lo:lo + block]) for k, per in enumerate(ids)
            for idx in [[i for i, item in enumerate(per) if item not in done]]
            for lo in range(0, len(idx), block)]
    n_todo = sum(len(b) for _, b in todo)
    total = sum(len(per) for per in ids)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, initial=total - n_todo, unit="img", desc="synth prefilter", file=sys.stderr,
                   dynamic_ncols=True, smoothing=0.1)
    t_ocr = time.monotonic()
    try:
        if todo:
            with RaySession(address, num_cpus=workers, num_threads=1) as session:
                n_workers = workers or session.cpus
                run = ray.remote(num_cpus=1, max_retries=3)(_run_block)
                pending: set = set()
                tally = Counter(r["verdict"] for r in done.values())
                nxt = 0
                with open(partial, "a", encoding="utf-8") as f:
                    while nxt < len(todo) or pending:
                        while nxt < len(todo) and len(pending) < 2 * n_workers:
                            k, idx = todo[nxt]
                            pending.add(run.remote(recipe.ocr_engine, tasks_specs[k], recipe.backgrounds, idx))
                            nxt += 1
                        [ref], _ = ray.wait(list(pending), num_returns=1)
                        pending.discard(ref)
                        identity, rows = get(ref)
                        if ocr_identity(recipe.backgrounds, identity) != header["ocr"]:
                            raise PrefilterError(
                                f"a worker's OCR engine differs from the driver's ({identity} vs {header['ocr']}): "
                                "install the same OCR package and model files on every node")
                        f.write("".join(json_line(r) for r in rows))
                        f.flush()
                        for r in rows:
                            done[r["id"]] = r
                        tally.update(r["verdict"] for r in rows)
                        if bar:
                            bar.update(len(rows))
                            bar.set_postfix(tally, refresh=False)
    finally:
        if bar:
            bar.close()
    seconds_ocr = time.monotonic() - t_ocr
    missing = [i for per in ids for i in per if i not in done]
    if missing:  # a bug: every block came back, yet an item has no row
        raise RuntimeError(f"{len(missing)} items have no row after the run (first: {missing[0]})")
    write_verdicts(out, header, [done[i] for per in ids for i in per])
    partial.unlink()
    counts = Counter(done[i]["verdict"] for per in ids for i in per)
    return {"out": str(out), "counts": {v: counts.get(v, 0) for v in VERDICTS}, "images": total,
            "resumed": total - n_todo, "seconds": round(time.monotonic() - t0, 3),
            "images_per_s": round(n_todo / seconds_ocr, 3) if n_todo and seconds_ocr > 0 else None,
            "sources": header["sources"]}


def _specs(recipe: Recipe, which) -> list[SourceSpec]:
    """``--source`` values -> SourceSpecs: a recipe background source when one has that name (or
    path), else a catalog / built-in name."""
    if which is None or (isinstance(which, (list, tuple)) and not which):
        return list(recipe.backgrounds.sources)
    if isinstance(which, (str, SourceSpec)):
        which = [which]
    out = []
    for w in which:
        if isinstance(w, SourceSpec):
            out.append(w)
            continue
        mine = [s for s in recipe.backgrounds.sources if w in (s.name, s.path)]
        out.append(mine[0] if mine else SourceSpec(name=w))
    return out


def _resolved(spec: SourceSpec, catalog) -> SourceSpec:
    """A catalog name -> the same source given by path and format (as ``open_source`` would open
    it), so a task needs no catalog; built-ins and path specs are kept."""
    if spec.path or spec.name in ("skimage-photos", "skimage-page-lines"):
        return spec
    from models.datasets import load_catalog
    from synth.sources.images import open_source

    open_source(spec, catalog=catalog, want_labels=False)  # unknown name / missing root: its own error
    entry = (catalog if catalog is not None else load_catalog())[spec.name]
    return replace(spec, path=str(entry.require_root()), format=entry.format, labels=entry.labels or spec.labels)


# -- in the worker ---------------------------------------------------------------------------------
_MEMO: dict[str, tuple] = {}  # settings -> (engine, its identity, source): built once per worker process


def _run_block(engine_name: str, spec: SourceSpec, cfg, indices: list[int]) -> tuple[dict, list[dict]]:
    from models.ocr import create_ocr
    from synth.sources.images import open_source

    key = json.dumps([engine_name, asdict(spec)], sort_keys=True)
    if key not in _MEMO:
        engine = create_ocr(engine_name, num_threads=1)  # one CPU per task: Ray runs one task per CPU
        _MEMO[key] = (engine, engine.identity(), open_source(spec, want_labels=False))
    engine, identity, src = _MEMO[key]
    return identity, [check_item(src, i, engine, cfg) for i in indices]
