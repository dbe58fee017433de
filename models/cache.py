"""The cache directory and how a cache entry is keyed.

Everything the toolkit caches (fixed LR of HR-only benchmarks, OCR readings of HR images,
converted weights live in the weights dir instead) lives under ``$TEXTSR_CACHE`` (default
``~/.cache/textsr``) and is keyed by *what it was computed from*: the content of the source file
(sha256), the settings that made it, and a code version that is bumped whenever the computation
changes. An edited image, another preset or a new algorithm therefore never meets a stale entry.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any


def cache_dir(*parts: str) -> Path:
    """``$TEXTSR_CACHE`` (default ``~/.cache/textsr``), joined with ``parts``."""
    root = Path(os.environ.get("TEXTSR_CACHE") or Path.home() / ".cache" / "textsr").expanduser()
    return root.joinpath(*parts)


def cache_key(*parts: Any, length: int = 16) -> str:
    """A short hex key of ``parts`` (anything JSON can write; dicts with sorted keys, paths as
    strings): the same inputs give the same key in every process and on every machine."""
    blob = json.dumps(parts, sort_keys=True, default=str, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:length]
