"""The dataset catalog: ``datasets.yaml`` entries (name -> format, root, counts, licence).

It lives on the ground floor because both ``synth`` (sources) and ``evalkit`` (benchmarks) read it.
Roots are relative to ``TEXTSR_DATA`` (default ``~/textsr-data``) unless absolute; ``$VARS`` and
``~`` are expanded. A user file (``--datasets FILE`` or ``TEXTSR_DATASETS``) adds or overrides
entries of the project's ``datasets.yaml``.

The project's catalog is package data, ``models/datasets.yaml``, read with ``importlib.resources``
so a wheel install has it too (the top-level ``datasets.yaml`` of the source tree is a symlink to
it, for people browsing the repository). A catalog file must hold a top-level ``datasets:``
mapping and nothing else: an empty file, a misspelt key or a stray top-level key is an error that
names the file, never a silently empty catalog.
"""
from __future__ import annotations

import importlib.resources
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from models.errors import TextsrError

# models/datasets.yaml (a Traversable: a plain Path for every ordinary install)
PROJECT_CATALOG = importlib.resources.files("models").joinpath("datasets.yaml")
# synth sources
SOURCE_FORMATS = ("image-folder", "ctr-lmdb", "folder-labels", "textseg", "image-mask")
# evalkit benchmarks (loaders in evalkit/loaders, registered in evalkit/loaders/registry.py)
BENCH_FORMATS = ("realce", "svt", "ctw1500", "icdar2015", "totaltext", "cute80", "textzoom", "realsr-v3",
                 "sr-pairs", "div2k-valid", "folder-bench", "ftsr-tadisr", "screensr",
                 "tair-realtext", "tair-satext", "reasontext", "uzst", "synth-corpus")
FORMATS = SOURCE_FORMATS + BENCH_FORMATS


class DatasetError(TextsrError, ValueError):
    """A dataset that cannot be used as asked; the message names dataset, path and the fix."""


@dataclass(frozen=True)
class DatasetEntry:
    name: str
    format: str
    root: str
    count: int | None = None
    licence: str = ""
    description: str = ""
    labels: str = ""                     # folder-labels: labels file relative to root
    extra: dict = field(default_factory=dict)

    def root_path(self) -> Path:
        p = Path(os.path.expandvars(os.path.expanduser(self.root)))
        if not p.is_absolute():
            p = data_root() / p
        return p

    def require_root(self) -> Path:
        p = self.root_path()
        if not p.exists():
            raise DatasetError(
                f"dataset {self.name!r}: root {p} does not exist (set TEXTSR_DATA, currently "
                f"{data_root()}, or give an absolute root in datasets.yaml / --datasets FILE)")
        return p


def data_root() -> Path:
    return Path(os.path.expanduser(os.environ.get("TEXTSR_DATA", "~/textsr-data")))


_KEYS = {"format", "root", "count", "licence", "description", "labels"}
# everything else in an entry (split, scale, subset, camera, lr_preset …) lands in ``extra``


def _parse(path) -> dict[str, DatasetEntry]:
    """Entries of one catalog file (``path``: a Path or an importlib Traversable)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise DatasetError(f"dataset catalog {path}: cannot read ({e.strerror})") from None
    except yaml.YAMLError as e:
        raise DatasetError(f"dataset catalog {path}: not valid YAML ({e})") from None
    if data is None:
        raise DatasetError(f"dataset catalog {path}: the file is empty; expected a top-level "
                           "'datasets:' mapping of name -> {format, root, ...}")
    if not isinstance(data, dict) or "datasets" not in data:
        found = f"top-level keys {', '.join(map(str, data))}" if isinstance(data, dict) and data \
            else f"a {type(data).__name__}"
        raise DatasetError(f"dataset catalog {path}: no top-level 'datasets:' key (found {found}); "
                           "write the entries under 'datasets:'")
    stray = [k for k in data if k != "datasets"]
    if stray:
        raise DatasetError(f"dataset catalog {path}: unknown top-level key(s) {', '.join(map(str, stray))} "
                           "(only 'datasets:' is read; indent the entries under it)")
    # "datasets:" with nothing under it: a catalog that deliberately adds no entry
    entries = {} if data["datasets"] is None else data["datasets"]
    if not isinstance(entries, dict):
        raise DatasetError(f"dataset catalog {path}: 'datasets:' must be a mapping of name -> "
                           f"{{format, root, ...}}, got a {type(entries).__name__}")
    out = {}
    for name, spec in entries.items():
        if not isinstance(spec, dict) or "format" not in spec or "root" not in spec:
            raise DatasetError(f"dataset catalog {path}: entry {name!r} needs at least 'format' and 'root'")
        if spec["format"] not in FORMATS:
            raise DatasetError(f"dataset catalog {path}: entry {name!r} has unknown format "
                               f"{spec['format']!r} (known: {', '.join(FORMATS)})")
        extra = {k: v for k, v in spec.items() if k not in _KEYS}
        out[name] = DatasetEntry(name=name, extra=extra, **{k: v for k, v in spec.items() if k in _KEYS})
    return out


def load_catalog(user_file: str | os.PathLike | None = None) -> dict[str, DatasetEntry]:
    """The project's catalog, overridden entry by entry by the user's file when given."""
    if not PROJECT_CATALOG.is_file():
        # a broken install (the wheel was built without its package data): say so, don't
        # pretend there are no benchmarks
        raise DatasetError(f"the project's dataset catalog {PROJECT_CATALOG} is missing: the "
                           "textsr-kit install is incomplete; reinstall it (pip install .)")
    cat = _parse(PROJECT_CATALOG)
    user = user_file or os.environ.get("TEXTSR_DATASETS")
    if user:
        p = Path(user).expanduser()
        if not p.is_file():
            raise DatasetError(f"dataset catalog {p} does not exist (from --datasets / TEXTSR_DATASETS)")
        cat.update(_parse(p))
    return cat
