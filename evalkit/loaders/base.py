"""The benchmark-loader protocol.

A loader reads one dataset in the layout its authors publish and yields ``BenchItem``s (key, HR,
LR when the set has real LR, text instances when it has annotations). It is built from a
datasets.yaml entry (``models.datasets.DatasetEntry``: ``root_path()``, ``extra`` holds the
format-specific keys such as ``split``/``scale``/``subset``) and never reads images at
construction, only listings and annotation files.

Bad annotation lines raise ``AnnotationError`` naming the file and the 1-based line; with
``skip_bad=True`` the loader logs the problem, counts it in ``self.skipped`` and goes on.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterator

from models.errors import TextsrError

log = logging.getLogger("evalkit.loaders")


class AnnotationError(TextsrError, ValueError):
    def __init__(self, path: Path | str, line: int | None, problem: str):
        where = f"{path}:{line}" if line else str(path)
        super().__init__(f"{where}: {problem}")
        self.path, self.line, self.problem = str(path), line, problem


class ImageReadError(AnnotationError):
    """An image a loader lists is missing or cannot be decoded. :meth:`Loader.items` turns it into
    an item the runner skips and counts (an error with ``--strict``), not the end of the run."""


def read_image(path: Path | str):
    """RGB uint8 HxWx3 of an image a loader lists, or ``ImageReadError`` naming the file."""
    from evalkit.benches import BenchError, read_rgb

    path = Path(path)
    if not path.is_file():
        raise ImageReadError(path, None, "image file is missing")
    try:
        return read_rgb(path)
    except BenchError:
        raise ImageReadError(path, None, "cannot be read as an image (truncated or not an image)") from None


class Loader:
    """Subclasses set ``has_lr`` / ``has_texts`` and implement ``keys()`` and ``item(key)``."""

    has_lr = False
    has_texts = False
    default_scale: int | None = None

    def __init__(self, entry, *, split: str | None = None, scale: int | None = None, skip_bad: bool = False):
        self.entry = entry
        self.root = Path(entry.root_path())
        self.split = split or entry.extra.get("split")
        self.scale = scale or entry.extra.get("scale") or self.default_scale
        self.skip_bad = skip_bad
        self.skipped: list[str] = []

    def bad(self, err: AnnotationError) -> None:
        """Raise, or log and count when skip_bad."""
        if not self.skip_bad:
            raise err
        log.warning("skipped: %s", err)
        self.skipped.append(str(err))

    def read_image(self, path: Path | str):
        return read_image(path)

    def keys(self) -> list[str]:
        raise NotImplementedError

    def item(self, key: str):
        """-> evalkit.benches.BenchItem"""
        raise NotImplementedError

    def items(self, limit: int | None = None) -> Iterator:
        """Items in key order; an item whose annotation is bad is raised, or skipped and counted
        with ``skip_bad``. ``limit`` counts yielded items."""
        n = 0
        for it in self.items_of(self.keys()):
            if limit is not None and n >= limit:
                return
            n += 1
            yield it

    def items_of(self, keys: list[str]) -> Iterator:
        """The items of ``keys``, in that order (bad annotations raised, or skipped with ``skip_bad``)."""
        for k in keys:
            try:
                it = self.item(k)
            except ImageReadError as e:
                from evalkit.benches import BenchItem

                it = BenchItem(key=k, hr=None, error=str(e), error_reason="image-unreadable")
            except AnnotationError as e:
                self.bad(e)
                continue
            yield it
