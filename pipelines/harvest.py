"""The harvest job: text crops cut from every photo of a ``harvest: true`` crop source (synth/harvest.py).

``synth build`` runs it in its driver before any shard is made, through its executor: the source's
item indices are cut into blocks and each block is one job (``executor.run_blocks``: in this process
for :class:`~pipelines.executors.LocalExecutor`; one Ray task per block, ``num_cpus=1``, re-run by
Ray when its worker dies, for :class:`~pipelines.ray_executor.RayExecutor`). A task harvests its
images through the project cache of the node it runs on (so a second build OCRs nothing) and
returns the results; the driver writes the kept crops and masks as they land and the two index
files (in image order) at the end, into ``<out>/harvest/<source>/`` through
:class:`models.files.Location` — a local path, a shared filesystem or an fsspec URL, which is what
the shard workers then read (:class:`synth.sources.harvested.HarvestedCrops`).

A photo that does not decode is recorded (``harvest/unreadable``) and skipped. Every task must
report the same harvest identity (OCR engine + model files, segmenter, settings): nodes with other
model files would make a corpus that no single setup reproduces.
"""
from __future__ import annotations

import json
import sys
from collections import Counter
from dataclasses import asdict, replace
from pathlib import Path

from models.errors import TextsrError
from models.files import Location
from synth.harvest import slug, spec_key, write_crops, write_index
from synth.recipe import Recipe, SourceSpec

HARVEST_DIR = "harvest"


class HarvestError(TextsrError, RuntimeError):
    """A harvest that cannot run or gave nothing to build from; the message says what to do."""


def harvest_specs(recipe: Recipe) -> list[SourceSpec]:
    """The crop sources of ``recipe`` to harvest (none when the recipe draws no real crops)."""
    if recipe.text.rendered_prob >= 1.0:
        return []
    return [s for s in recipe.text.crops.sources if s.harvest]


def build_folder(out, spec: SourceSpec) -> str:
    """Where a build at ``out`` keeps ``spec``'s harvest: ``<out>/harvest/<source>``, absolute when
    local (Ray workers do not share the driver's working directory)."""
    rel = f"{HARVEST_DIR}/{slug(spec_key(spec))}"
    loc = Location(out)
    return loc.path(rel) if loc.local is None else str(loc.local.resolve() / rel)


def harvest_source(recipe: Recipe, spec: SourceSpec | str, folder, *, run_blocks, catalog=None,
                   num_threads: int | None = None, block: int = 8, progress: bool = False) -> dict:
    """Harvest every image of ``spec`` (a ``harvest: true`` crop source, or a catalog name / folder
    path of photos) into ``folder``. ``run_blocks(fn, [args, ...])`` yields ``(n, fn(*args[n]))`` in
    any order (an executor's). Returns the summary a manifest records: ``source``, ``folder``,
    ``images``, ``kept``, ``counts`` (``kept`` and ``stage/reason`` -> n), ``cache`` (``hits``,
    ``misses``: images computed in this run) and ``identity`` (``ocr``, ``segmenter``, ``settings``,
    ``checks``, ``version``). Raises :class:`HarvestError` when no crop is kept."""
    from pipelines.prefilter import _resolved
    from synth.sources.images import open_source

    if isinstance(spec, str):
        spec = SourceSpec(name=spec, harvest=True) if not Path(spec).is_dir() else \
            SourceSpec(path=spec, format="image-folder", harvest=True)
    if block < 1:
        raise HarvestError(f"block must be at least 1, got {block}")
    plain = _resolved(replace(spec, harvest=False), catalog)  # tasks then need no catalog
    if plain.format not in ("", "image-folder"):
        raise HarvestError(f"harvest source {spec_key(spec)!r} is {plain.format}; harvest: true takes an "
                           "image-folder of photos (labelled crops need no harvest: drop harvest: true)")
    src = open_source(plain, want_labels=False)
    key = spec_key(spec)
    ids = [src.item_id(i) for i in range(len(src))]
    loc = Location(folder)
    args = [(recipe, plain, list(range(lo, min(len(ids), lo + block))), num_threads)
            for lo in range(0, len(ids), block)]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(ids), unit="img", desc=f"harvest {key}", file=sys.stderr, dynamic_ncols=True)
    results: dict = {}
    identity = None
    cache = Counter(hits=0, misses=0)
    try:
        for _, (ident, rows) in run_blocks(_harvest_block, args):
            if identity is None:
                identity = ident
            elif ident != identity:
                raise HarvestError(f"harvest of {key!r}: two workers harvest differently ({_first_diff(identity, ident)}); "
                                   "install the same OCR package, model files and segmenter weights on every node")
            for i, res, hit in rows:
                write_crops(loc, i, res)
                for c in res.crops:  # written: the index needs only their metadata, not the pixels
                    c.rgb = c.mask = None
                results[i] = res
                cache["hits" if hit else "misses"] += 1
            if bar:
                bar.update(len(rows))
    finally:
        if bar:
            bar.close()
    head = write_index(loc, {"source": key, "identity": identity or {}}, [(ids[i], results[i]) for i in range(len(ids))])
    summary = {"source": key, "folder": str(folder), "images": len(ids), "kept": head["kept"],
               "counts": head["counts"], "cache": dict(cache), "identity": identity or {}}
    if head["kept"] == 0:
        raise HarvestError(f"harvest of {key!r}: no text crop kept from {len(ids)} image(s) (verdicts: "
                           f"{head['counts'] or 'no text lines found'}); add photos with legible text, or lower "
                           "text.crops.harvest.min_score / min_height")
    return summary


def _first_diff(a, b, where: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if a.get(k) != b.get(k):
                return _first_diff(a.get(k), b.get(k), f"{where}.{k}" if where else k)
    return f"{where}: {a!r} vs {b!r}"


def local_blocks(fn, args):
    """``run_blocks`` in this process, in order."""
    for n, a in enumerate(args):
        yield n, fn(*a)


# -- in the worker ---------------------------------------------------------------------------------
_MEMO: dict[str, tuple] = {}  # per process: (harvester, source) of the current harvest


def _harvest_block(recipe: Recipe, spec: SourceSpec, indices: list[int], num_threads: int | None):
    """``(harvest identity, [(index, ImageHarvest, cache hit), ...])`` for ``indices`` of ``spec``."""
    from synth.harvest import Harvester
    from synth.sources.images import open_source

    key = json.dumps([recipe.hash(), asdict(spec), num_threads], sort_keys=True)
    if key not in _MEMO:
        _MEMO.clear()  # a long-lived worker keeps one harvest's models, not every one's
        _MEMO[key] = (Harvester(recipe, num_threads=num_threads), open_source(spec, want_labels=False))
    harvester, src = _MEMO[key]
    rows = []
    for i in indices:
        try:
            data = src.load(i)
        except OSError:  # unreadable file: recorded as an undecodable image, as corrupt bytes are
            data = b""
        res, hit = harvester.cached(data, src.item_id(i))
        rows.append((i, res, hit))
    return harvester.identity(), rows
