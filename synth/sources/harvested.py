"""Text crops harvested from photos (synth/harvest.py), read back from a build's harvest folder.

The driver of ``synth build`` writes ``<out>/harvest/<source>/`` before any shard is made; every
worker reads it through :class:`models.files.Location`, so the folder may be local, on a shared
filesystem or behind an fsspec URL. The index is read once per worker; crops and masks lazily.
"""
from __future__ import annotations

import json
from functools import cached_property

import numpy as np

from models.datasets import DatasetError
from models.files import Location


class HarvestedCrops:
    """The kept crops of one harvest folder, in image order. ``mask(i)`` is the glyph mask the
    harvest's segmenter made, so a build does not segment the crop again."""

    def __init__(self, where: str):
        self.where = str(where)
        self._loc = Location(self.where)

    def __getstate__(self):  # a Location's fsspec filesystem is re-made in each process
        return {"where": self.where, "_loc": None}

    def __setstate__(self, state):
        self.where = state["where"]
        self._loc = Location(self.where)

    @cached_property
    def _index(self) -> tuple[dict, list[dict]]:
        from synth.harvest import CROPS_INDEX, FORMAT

        if not self._loc.isfile(CROPS_INDEX):
            raise DatasetError(f"harvest folder {self.where}: no {CROPS_INDEX} (an interrupted harvest); "
                               "run the build again to redo it")
        lines = self._loc.read_bytes(CROPS_INDEX).decode("utf-8").splitlines()
        try:
            rows = [json.loads(x) for x in lines if x.strip()]
        except json.JSONDecodeError as e:
            raise DatasetError(f"{self._loc.path(CROPS_INDEX)}: not valid JSON lines ({e})") from None
        if not rows or rows[0].get("format") != FORMAT:
            raise DatasetError(f"{self._loc.path(CROPS_INDEX)}: not a {FORMAT} index")
        return rows[0], rows[1:]

    @property
    def header(self) -> dict:
        """The harvest's header: ``source``, ``identity`` (OCR, segmenter, settings), ``counts``."""
        return self._index[0]

    @property
    def rows(self) -> list[dict]:
        return self._index[1]

    @property
    def name(self) -> str:
        return self.header.get("source", self.where)

    def __len__(self) -> int:
        return len(self.rows)

    def item_id(self, i: int) -> str:
        """``<image item id>#l<line>[w<word>]``: the photo and the line (and word) it was cut from."""
        return self.rows[i]["id"]

    def load(self, i: int) -> bytes:
        return self._loc.read_bytes(self.rows[i]["crop"])

    def mask(self, i: int) -> np.ndarray:
        """``HxW uint8`` in {0, 255}, the crop's glyph pixels."""
        import cv2

        m = cv2.imdecode(np.frombuffer(self._loc.read_bytes(self.rows[i]["mask"]), np.uint8), cv2.IMREAD_GRAYSCALE)
        if m is None:
            raise DatasetError(f"{self._loc.path(self.rows[i]['mask'])}: not a readable PNG")
        return np.where(m > 0, 255, 0).astype(np.uint8)

    def label(self, i: int) -> str:
        return self.rows[i]["label"]

    def checks(self, i: int) -> dict:
        """The OCR filter's result the harvest recorded for crop ``i`` (readings, similarities): the
        same engine (the harvest identity names it) on the same lossless crop and mask would give it
        again, so a build takes it instead of recognising the crop twice more."""
        return dict(self.rows[i]["checks"])

    def info(self, i: int) -> dict:
        """Where crop ``i`` came from: its photo, the line's quad there, whether it was rectified."""
        r = self.rows[i]
        return {"image": r["image"], "polygon": r["polygon"], "rectified": r["rectified"]}
