"""A synth corpus streamed for training: its webdataset shards read with plain ``webdataset``.

Per sample (fields ``hr.png``, ``lr.png``, ``mask.png``, ``json``, as ``synth build`` writes them) ->
``lr`` 3×h×w float32 in [0, 1], ``hr`` 3×H×W float32 in [0, 1], ``mask`` 1×H×W float32 in [0, 1]
(the official ``FTSR512Dataset`` reads the mask PNG with ``ToTensor``), ``boxes``: the text
polygons as quadrilaterals (4×2 float32, x/y in HR pixels of the crop; TL, TR, BR, BL). The
official loop gets its boxes from an OCR detector run on the GT mask (``ocr_model(mask_gt_ori)``);
a synth corpus has the ground-truth polygons, used instead (a polygon of more than 4 points
becomes its minimum-area rectangle, ordered as the official ``min_bounding_rect``).

Crops: an aligned random crop (``hr_crop`` px on HR, ``hr_crop / scale`` on LR, offset a multiple
of ``scale``); boxes are shifted, clamped to the crop and dropped when thinner than 4 px.

Order: epoch ``e`` reads the shards in an order drawn from (seed, e), passes them through a shuffle
buffer seeded the same way, and rank ``r`` of ``w`` processes takes every w-th sample from r on;
each crop comes from a generator seeded by (seed, e, key). So the stream is a function of the seed
alone, and a resumed run skips the samples it already used (undecoded) to continue exactly.

A sample missing a field is skipped and counted (``stats``), never an error; a directory that is
not a synth build is a :class:`~synth.shards.CorpusError`.

Other corpora reuse the ordering, sharding and resume logic with their own ``fields``, ``decoder``
(``(key, fields, hr_crop, rng | None) -> sample``; ValueError/KeyError: skipped) and ``collate``
(e.g. :mod:`pipelines.train.glyph_data`).
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from synth.shards import CorpusError, build_shards, open_build

FIELDS = ("hr.png", "lr.png", "mask.png", "json")
MIN_BOX_PX = 4


def corpus_shards(corpus) -> tuple[list[str], dict]:
    """The shard files of a synth build (manifest order) and its manifest; CorpusError naming the
    directory when it is not one or a listed shard is missing."""
    manifest = open_build(corpus, "--data")
    shards = build_shards(corpus, manifest)
    if not shards:
        raise CorpusError(f"--data {corpus}: the manifest lists no shards; the build has no samples yet")
    return [str(s) for s in shards], manifest


def _order_quad(pts: np.ndarray) -> np.ndarray:
    # the official min_bounding_rect ordering: TL, TR, BR, BL
    xs = sorted(pts.tolist(), key=lambda p: p[0])
    tl, bl = sorted(xs[:2], key=lambda p: p[1])
    tr, br = sorted(xs[2:], key=lambda p: p[1])
    return np.array([tl, tr, br, bl], np.float32)


def polygon_quad(polygon) -> np.ndarray:
    """A text polygon (list of [x, y]) -> its 4×2 quadrilateral, TL/TR/BR/BL."""
    import cv2

    pts = np.asarray(polygon, np.float32).reshape(-1, 2)
    if len(pts) != 4:
        pts = cv2.boxPoints(cv2.minAreaRect(pts))
    return _order_quad(pts)


def crop_boxes(quads, x0: int, y0: int, size: int) -> list[np.ndarray]:
    out = []
    for q in quads:
        q = np.clip(q - np.array([x0, y0], np.float32), 0, size - 1)
        w = max(np.linalg.norm(q[0] - q[1]), np.linalg.norm(q[2] - q[3]))
        h = max(np.linalg.norm(q[0] - q[3]), np.linalg.norm(q[1] - q[2]))
        if w >= MIN_BOX_PX and h >= MIN_BOX_PX:
            out.append(q)
    return out


@dataclass
class Sample:
    key: str
    lr: np.ndarray     # 3×h×w float32 [0, 1]
    hr: np.ndarray     # 3×H×W float32 [0, 1]
    mask: np.ndarray   # 1×H×W float32 [0, 1]
    boxes: list        # [4×2 float32] in crop pixels


def decode(key: str, fields: dict, hr_crop: int, rng: np.random.Generator | None) -> Sample:
    """One raw sample -> a cropped :class:`Sample` (``rng`` None: the crop centred on the first text,
    for evaluation). ValueError when
    the images do not fit (LR not HR / integer scale, HR smaller than the crop)."""
    from synth.export import read_sample_images

    try:
        hr, lr, mask, meta = read_sample_images(fields)
    except ValueError as e:
        raise ValueError(f"{key}: {e}") from None
    H, W = hr.shape[:2]
    s = H // lr.shape[0]
    if s < 1 or lr.shape[0] * s != H or lr.shape[1] * s != W or mask.shape != (H, W):
        raise ValueError(f"{key}: HR {hr.shape[:2]}, LR {lr.shape[:2]}, mask {mask.shape} are not ×scale aligned")
    if hr_crop % s or H < hr_crop or W < hr_crop:
        raise ValueError(f"{key}: cannot take a {hr_crop}² crop (a multiple of the scale {s}) from {H}×{W}")
    ny, nx = (H - hr_crop) // s, (W - hr_crop) // s
    quads = [polygon_quad(t["polygon"]) for t in meta.get("texts", []) if t.get("polygon")]
    if rng is None:  # centred on the first text's centre (the image centre without text), clamped
        cx, cy = quads[0].mean(0) if quads else (W / 2, H / 2)
        y0 = int(np.clip(round((cy - hr_crop / 2) / s), 0, ny)) * s
        x0 = int(np.clip(round((cx - hr_crop / 2) / s), 0, nx)) * s
    else:
        y0, x0 = int(rng.integers(0, ny + 1)) * s, int(rng.integers(0, nx + 1)) * s
    c = hr_crop // s
    f = np.float32(1 / 255)
    return Sample(
        key,
        np.ascontiguousarray(lr[y0 // s:y0 // s + c, x0 // s:x0 // s + c].transpose(2, 0, 1)) * f,
        np.ascontiguousarray(hr[y0:y0 + hr_crop, x0:x0 + hr_crop].transpose(2, 0, 1)) * f,
        mask[None, y0:y0 + hr_crop, x0:x0 + hr_crop].astype(np.float32) * f,
        crop_boxes(quads, x0, y0, hr_crop),
    )


def collate(samples: list[Sample]) -> dict:
    """-> {"keys", "lr" N×3×h×w, "hr" N×3×H×W, "mask" N×1×H×W (float32 tensors), "boxes" [[4×2]]}."""
    import torch

    return {"keys": [s.key for s in samples],
            "lr": torch.from_numpy(np.stack([s.lr for s in samples])),
            "hr": torch.from_numpy(np.stack([s.hr for s in samples])),
            "mask": torch.from_numpy(np.stack([s.mask for s in samples])),
            "boxes": [s.boxes for s in samples]}


def _seed(*parts) -> np.random.Generator:
    import zlib

    return np.random.default_rng([zlib.crc32(str(p).encode()) for p in parts])


class CorpusStream:
    """The training stream of a synth corpus (see the module docstring).

    corpus: a synth build directory. hr_crop: HR crop size (px, a multiple of the corpus scale).
    seed, shuffle_buffer: the order. rank, world: this process among ``world``.
    fields: the members a sample must have. decoder(key, fields, hr_crop, rng) -> one sample
    (``rng`` None: the deterministic evaluation crop). collate(list of samples) -> a batch.
    ``stats``: Counter of skipped samples by reason (``missing-<field>``, ``undecodable``).
    """

    def __init__(self, corpus, *, hr_crop: int, seed: int = 0, shuffle_buffer: int = 64, rank: int = 0,
                 world: int = 1, fields=FIELDS, decoder=decode, collate=collate):
        self.shards, self.manifest = corpus_shards(corpus)
        self.corpus, self.hr_crop, self.seed = Path(corpus), int(hr_crop), int(seed)
        self.buffer, self.rank, self.world = max(1, int(shuffle_buffer)), int(rank), int(world)
        self.fields, self.decoder, self.collate = tuple(fields), decoder, collate
        self.stats: Counter = Counter()

    def _raw(self, shards) -> Iterator[tuple[str, dict]]:
        import webdataset as wds

        ds = wds.WebDataset(shards, shardshuffle=False, nodesplitter=None, workersplitter=None, empty_check=False)
        for s in ds:
            fields = {k: v for k, v in s.items() if not k.startswith("__")}
            missing = [f for f in self.fields if f not in fields]
            if missing:
                self.stats[f"missing-{missing[0].split('.')[0]}"] += 1
                continue
            yield s["__key__"], fields

    def _epoch(self, e: int) -> Iterator[tuple[str, dict]]:
        rng = _seed(self.seed, e, "order")
        shards = [self.shards[i] for i in rng.permutation(len(self.shards))]
        buf, n = [], 0
        for item in self._raw(shards):
            buf.append(item)
            if len(buf) >= self.buffer:
                yield from self._take(buf.pop(int(rng.integers(len(buf)))), n)
                n += 1
        while buf:
            yield from self._take(buf.pop(int(rng.integers(len(buf)))), n)
            n += 1

    def _take(self, item, n):
        if n % self.world == self.rank:
            yield item

    def samples(self, skip: int = 0) -> Iterator:
        """Endless decoded samples of this rank, the first ``skip`` of them passed over undecoded."""
        e = 0
        while True:
            got = tried = ok = 0
            for key, fields in self._epoch(e):
                got += 1
                if skip > 0:
                    skip -= 1
                    continue
                tried += 1
                try:
                    sample = self.decoder(key, fields, self.hr_crop, _seed(self.seed, e, key))
                except (ValueError, KeyError) as err:
                    self.stats["undecodable"] += 1
                    self.last_error = str(err)
                    continue
                ok += 1
                yield sample
            # no sample at all, or a whole epoch of which none decodes (else this would loop for ever)
            if got == 0 or tried == got and ok == 0:
                raise CorpusError(f"--data {self.corpus}: no usable sample for rank {self.rank} of {self.world} "
                                  f"(skipped: {dict(self.stats) or 'none'}"
                                  + (f"; last error: {self.last_error}" if got else "") + ")")
            e += 1

    def batches(self, batch_size: int, start_step: int = 0) -> Iterator[dict]:
        """Endless collated batches; ``start_step`` batches already trained are skipped."""
        it = self.samples(skip=start_step * batch_size)
        while True:
            yield self.collate([next(it) for _ in range(batch_size)])


def fixed_batch(corpus, n: int, hr_crop: int, stream: CorpusStream | None = None) -> dict:
    """The first ``n`` usable samples in manifest order, each decoded with ``rng`` None (cropped
    around its first text): a fixed evaluation batch. ``stream``: whose fields/decoder/collate to
    use (default: the FTSR ones)."""
    stream = stream or CorpusStream(corpus, hr_crop=hr_crop)
    out = []
    for key, fields in stream._raw(stream.shards):
        try:
            out.append(stream.decoder(key, fields, hr_crop, None))
        except (ValueError, KeyError):
            continue
        if len(out) == n:
            break
    if not out:
        raise CorpusError(f"--data {corpus}: no usable sample for the evaluation batch")
    return stream.collate(out)
