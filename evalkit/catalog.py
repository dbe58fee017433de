"""``evalkit datasets``: each datasets.yaml entry with its status here."""
from __future__ import annotations

import os
from pathlib import Path

from models.datasets import BENCH_FORMATS, DatasetError


def _count(entry) -> int:
    """Items an entry holds, read the way its consumer reads it (benchmarks: every item, images
    and annotations, so this takes as long as one pass over the data)."""
    root = entry.root_path()
    if entry.format == "image-folder":
        from models.files import IMAGE_EXTS

        return sum(Path(f).suffix.lower() in IMAGE_EXTS for _, _, fs in os.walk(root) for f in fs)
    if entry.format in ("ctr-lmdb", "folder-labels", "textseg", "image-mask"):
        from synth.recipe import SourceSpec
        from synth.sources.images import open_source

        return len(open_source(SourceSpec(name=entry.name), catalog={entry.name: entry}, want_labels=True))
    if entry.format == "synth-corpus":
        from synth.shards import read_manifest

        m = read_manifest(root)
        if m is None:
            raise ValueError(f"{root}: no manifest.json")
        return m["counts"]["kept"]
    from evalkit.loaders.registry import create_loader

    # read every item: annotation files are parsed, so a malformed line shows here, not mid-run
    return sum(1 for _ in create_loader(entry).items())


def status_rows(catalog: dict) -> list[dict]:
    """found / root missing / count mismatch / unreadable annotation, per entry."""
    from evalkit.loaders.base import AnnotationError

    rows = []
    for name, e in sorted(catalog.items()):
        role = "benchmark" if e.format in BENCH_FORMATS else "synth source"
        root = e.root_path()
        if not root.exists():
            status = f"root missing: {root}"
        else:
            try:
                n = _count(e)
                if e.count is not None and n != e.count:
                    status = f"count mismatch: {n} found, {e.count} expected"
                else:
                    status = f"found: {n} items"
            except AnnotationError as err:
                status = f"unreadable annotation: {err}"
            except (DatasetError, ValueError, OSError) as err:
                status = f"unreadable: {err}"
        rows.append({"name": name, "format": e.format, "role": role, "status": status})
    return rows
