"""Benchmarks for ``evalkit score``: where LR, HR, masks and text annotations come from.

``open_bench(spec)`` accepts a corpus directory made by ``synth build`` (its shards hold LR, HR,
mask and text polygons) or a datasets.yaml name (whose loaders arrive with the benchmark-loaders
work; until then a clear error). ``folder_pairs`` pairs an SR folder with HR/LR folders by file
stem for ``--sr-dir``.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import cv2
import numpy as np

from evalkit.sample import TextInstance
from models.files import IMAGE_EXTS, is_image_file
from models.errors import TextsrError


class BenchError(TextsrError, ValueError):
    """A benchmark that cannot be read; names the path and the problem."""


@dataclass
class BenchItem:
    key: str
    hr: np.ndarray | None
    lr: np.ndarray | None = None
    mask: np.ndarray | None = None
    texts: list[TextInstance] | None = None
    sr_path: Path | None = None      # folder mode: the given SR output
    hr_path: Path | None = None
    meta: dict = field(default_factory=dict)
    error: str | None = None         # why this item cannot be scored (unreadable image …): skipped, counted
    error_reason: str | None = None  # its short category ("hr-unreadable" …) for the summary's counts


@dataclass
class Bench:
    """A benchmark. ``items`` iterates it whole; ``keys`` (its order) and ``load(keys)`` (the items of
    those keys, in that order) address it by key, so a run can be split into batches that any
    process scores on its own (``evalkit score --workers``) and a batch reads only its own images."""

    name: str
    ident: str          # stable id for caches (path + size of what it reads)
    scale: int | None
    items: Iterator[BenchItem] | list
    length: int | None
    info: dict = field(default_factory=dict)
    keys: list[str] | None = None
    load: Callable[[list[str]], Iterator[BenchItem]] | None = None


def read_rgb(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise BenchError(f"{path}: cannot read as an image")
    return np.ascontiguousarray(img[:, :, ::-1])


def synth_corpus(root: Path, limit: int | None = None) -> Bench:
    """A ``synth build`` output directory: every sample of its shards, with its GT polygons."""
    from synth.export import iter_samples, iter_shard, read_sample_images
    from synth.shards import build_shards, read_manifest

    m = read_manifest(root)
    if m is None:
        raise BenchError(f"{root}: no manifest.json — not a corpus made by `synth build`")
    n = m["counts"]["kept"]
    ident = hashlib.sha256(json.dumps([str(root.resolve())] + [s["sha256"] for s in m["shards"]]).encode()).hexdigest()[:16]

    def item(key, f) -> BenchItem:
        hr, lr, mask, meta = read_sample_images(f)
        texts = [TextInstance(np.array(t["polygon"], np.float32), t["text"], False, t.get("language", ""))
                 for t in meta.get("texts", [])]
        return BenchItem(key=key, hr=np.ascontiguousarray(hr), lr=np.ascontiguousarray(lr), mask=mask, texts=texts,
                         meta={"degradation": meta.get("degradation", {}).get("preset")})

    def items() -> Iterator[BenchItem]:
        for i, (key, f) in enumerate(iter_samples(root)):
            if limit is not None and i >= limit:
                return
            yield item(key, f)

    # key -> shard, from the tar headers alone (no image is decoded to list the keys)
    import tarfile

    where: dict[str, Path] = {}
    for shard in build_shards(root, m):
        with tarfile.open(shard) as tar:
            for name in tar.getnames():
                where.setdefault(name.partition(".")[0], shard)
    keys = list(where)[:limit] if limit else list(where)

    def load(wanted: list[str]) -> Iterator[BenchItem]:
        found: dict[str, BenchItem] = {}
        want = set(wanted)
        for shard in dict.fromkeys(where[k] for k in wanted):
            for key, f in iter_shard(shard):
                if key in want:
                    found[key] = item(key, f)
        return iter([found[k] for k in wanted])

    return Bench(name=f"synth:{root.name}", ident=ident, scale=m["recipe"]["degrade"]["scale"], items=items(),
                 length=min(n, limit) if limit else n,
                 info={"path": str(root.resolve()), "recipe": m["recipe"]["name"], "recipe_hash": m["recipe_hash"]},
                 keys=keys, load=load)


def images_by_stem(folder: Path, what: str) -> dict[str, Path]:
    """Image files of ``folder`` by file stem; a folder that is missing, empty, or holds two images
    of one stem is a :class:`BenchError` naming it."""
    if not folder.is_dir():
        raise BenchError(f"{what} {folder} is not a directory")
    out = {}
    for p in sorted(folder.iterdir()):
        if is_image_file(p):
            if p.stem in out:
                raise BenchError(f"{what} {folder}: two images share the stem {p.stem!r} ({out[p.stem].name}, {p.name})")
            out[p.stem] = p
    if not out:
        raise BenchError(f"{what} {folder}: no images ({', '.join(sorted(IMAGE_EXTS))})")
    return out


def folder_pairs(sr_dir: Path | None, hr_dir: Path, lr_dir: Path | None = None, limit: int | None = None) -> Bench:
    """Pair images by file stem. With ``sr_dir`` every SR image needs an HR of the same stem
    (missing ones are an error naming them); without it (model mode) ``lr_dir`` is required."""
    hr = images_by_stem(Path(hr_dir), "--hr-dir")
    lr = images_by_stem(Path(lr_dir), "--lr-dir") if lr_dir else {}
    if sr_dir is not None:
        sr = images_by_stem(Path(sr_dir), "--sr-dir")
        missing = sorted(set(sr) - set(hr))
        if missing:
            raise BenchError(f"--hr-dir {hr_dir} has no image for {len(missing)} SR image(s): {', '.join(missing[:5])}")
        keys = sorted(sr)
    else:
        if not lr:
            raise BenchError("scoring a model on folders needs --lr-dir (the inputs) and --hr-dir")
        missing = sorted(set(lr) - set(hr))
        if missing:
            raise BenchError(f"--hr-dir {hr_dir} has no image for {len(missing)} LR image(s): {', '.join(missing[:5])}")
        keys, sr = sorted(lr), {}
    keys = keys[:limit] if limit else keys
    ident = hashlib.sha256(json.dumps([str(Path(hr_dir).resolve())] + keys).encode()).hexdigest()[:16]

    def load(wanted: list[str]) -> Iterator[BenchItem]:
        for k in wanted:
            try:
                yield BenchItem(key=k, hr=read_rgb(hr[k]), lr=read_rgb(lr[k]) if k in lr else None,
                                sr_path=sr.get(k), hr_path=hr[k])
            except BenchError as e:  # one unreadable file: the runner skips and counts the image
                yield BenchItem(key=k, hr=None, sr_path=sr.get(k), hr_path=hr[k], error=str(e),
                                error_reason="hr-unreadable" if str(hr[k]) in str(e) else "lr-unreadable")

    return Bench(name=f"folder:{Path(hr_dir).name}", ident=ident, scale=None, items=load(keys), length=len(keys),
                 info={"hr_dir": str(Path(hr_dir).resolve()), "sr_dir": str(Path(sr_dir).resolve()) if sr_dir else None,
                       "lr_dir": str(Path(lr_dir).resolve()) if lr_dir else None},
                 keys=keys, load=load)


def dataset_bench(entry, *, limit: int | None = None, scale: int | None = None, lr_preset: str = "matlab-bicubic",
                  lr_seed: int = 0, skip_bad: bool = False) -> Bench:
    """A datasets.yaml benchmark through its loader. HR-only sets (SVT, CTW1500, CUTE80, IC15,
    Total-Text) get LR synthesised at ``scale`` with a named degradation preset and a fixed seed,
    cached, so every user scores on the same LR."""
    from models.datasets import DatasetError

    root = entry.require_root() if entry.format != "synth-corpus" else entry.root_path()
    if entry.format == "synth-corpus":
        if not root.is_dir():
            raise DatasetError(f"dataset {entry.name!r}: root {root} does not exist")
        return synth_corpus(root, limit)
    from evalkit.loaders.registry import create_loader

    loader = create_loader(entry, scale=scale, skip_bad=skip_bad)
    info = {"dataset": entry.name, "format": entry.format, "root": str(root), "split": loader.split}
    if not loader.has_lr:
        from evalkit.loaders.synthlr import FixedLR
        loader = FixedLR(loader, scale=scale or loader.scale or 4, preset=lr_preset, seed=lr_seed)
        info["synthesised_lr"] = loader.info()
    keys = loader.keys()
    n = min(len(keys), limit) if limit else len(keys)
    ident = hashlib.sha256(json.dumps([entry.name, str(root), loader.split, loader.scale, keys[:n]]).encode()).hexdigest()[:16]
    return Bench(name=entry.name, ident=ident, scale=loader.scale, items=loader.items(limit), length=n, info=info,
                 keys=keys[:n], load=loader.items_of)


def open_bench(spec: str, limit: int | None = None, catalog=None, **kw) -> Bench:
    """``spec``: a synth corpus directory or a datasets.yaml name (``kw`` go to ``dataset_bench``)."""
    p = Path(spec).expanduser()
    if p.is_dir():
        return synth_corpus(p, limit)
    from models.datasets import BENCH_FORMATS, load_catalog

    catalog = catalog if catalog is not None else load_catalog()
    if spec in catalog:
        e = catalog[spec]
        if e.format not in BENCH_FORMATS:
            raise BenchError(f"{spec!r} is a {e.format} synth source, not a benchmark")
        return dataset_bench(e, limit=limit, **kw)
    import difflib

    close = difflib.get_close_matches(spec, list(catalog), n=1)
    raise BenchError(f"--bench {spec!r} is neither a directory nor a datasets.yaml name"
                     + (f"; did you mean {close[0]!r}?" if close else ""))
