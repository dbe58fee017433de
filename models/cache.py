"""The cache directory and how a cache entry is keyed.

Everything the toolkit caches (fixed LR of HR-only benchmarks, OCR readings of HR images,
converted weights live in the weights dir instead) lives under ``$TEXTSR_CACHE`` (default
``~/.cache/textsr``) and is keyed by *what it was computed from*: the content of the source file
(sha256), the settings that made it, and a code version that is bumped whenever the computation
changes. An edited image, another preset or a new algorithm therefore never meets a stale entry.

In memory, :class:`LRU` bounds what a long run keeps (prompt embeddings of per-image prompts,
decoded text crops): the least recently used entries go first.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections import OrderedDict
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


class LRU:
    """A map of at most ``size`` entries; reading or writing a key makes it the most recent, and a
    write beyond ``size`` drops the least recent. For in-memory caches of values that are a pure
    function of their key (so an eviction costs a recomputation, never a different result)."""

    def __init__(self, size: int):
        if int(size) < 1:
            raise ValueError(f"LRU size must be >= 1, got {size}")
        self.size = int(size)
        self._d: OrderedDict = OrderedDict()

    def get(self, key, default=None):
        if key not in self._d:
            return default
        self._d.move_to_end(key)
        return self._d[key]

    def __setitem__(self, key, value) -> None:
        self._d[key] = value
        self._d.move_to_end(key)
        while len(self._d) > self.size:
            self._d.popitem(last=False)

    def __contains__(self, key) -> bool:
        return key in self._d

    def __len__(self) -> int:
        return len(self._d)
