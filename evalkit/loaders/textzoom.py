"""TextZoom: real LR/HR scene-text crop pairs in LMDB.

Paper: Wang et al., "Scene Text Image Super-Resolution in the Wild", ECCV 2020; repository
https://github.com/WenjiaWang0312/TextZoom (also mirrored as JasonBoy1/TextZoom). The images come
from RealSR and SR-RAW; the dataset is released for research use (check the repository's README
before redistributing).

Layout (verified against ``src/dataset/dataset.py``, ``lmdbDataset_real``, of WenjiaWang0312/TextZoom):
one LMDB directory per split, ``train1``, ``train2``, ``test/easy``, ``test/medium``,
``test/hard``; keys ``num-samples`` (ASCII int), ``label-%09d`` (UTF-8), ``image_hr-%09d`` and
``image_lr-%09d`` (encoded images), 1-based (the official ``__getitem__`` does ``index += 1``).

Sizes: images are stored at their native crop sizes; the official pipeline
(``alignCollate_real`` with ``src/config/super_resolution.yaml``: width 128, height 32,
``down_sample_scale: 2``) resizes HR to 128×32 and LR to 64×16 with PIL bicubic before the
network. This loader gives the images as stored, reports ``scale = 2`` and the native sizes in
``meta`` (``hr_size``/``lr_size`` as [H, W]; ``official_hr_size``/``official_lr_size`` [32, 128] /
[16, 64]); the LR × 2 == HR check of the pair loaders is not applied (native sizes need not obey
it). Labels are given raw; the official code filters them by ``voc_type`` (``str_filt``) before
recognition — that is the metric's business. One ``TextInstance`` per item: the whole HR crop,
the label, not don't-care.

Extras: ``split`` — ``easy`` | ``medium`` | ``hard`` | ``test`` (all three, in that order) |
``train1`` | ``train2`` | any relative path to an LMDB directory under the root. Keys are
``<subset>/<index>`` with the 9-digit 1-based index, e.g. ``easy/000000001``.

The LMDB environment is opened lazily, read-only and without locking, once per process (a forked
worker reopens it), as the official loader does.
"""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from evalkit.benches import BenchItem
from evalkit.loaders.base import AnnotationError, Loader
from evalkit.sample import TextInstance

SUBSETS = {"easy": "test/easy", "medium": "test/medium", "hard": "test/hard", "train1": "train1", "train2": "train2"}
OFFICIAL_HR_SIZE, OFFICIAL_LR_SIZE = (32, 128), (16, 64)


class TextZoom(Loader):
    has_lr = True
    has_texts = True
    default_scale = 2

    def __init__(self, entry, **kw):
        super().__init__(entry, **kw)
        split = str(self.split or "test").strip("/")
        names = ["easy", "medium", "hard"] if split == "test" else [split]
        self.split = split
        # subset name (used in keys) -> LMDB directory
        self.dbs: dict[str, Path] = {}
        for n in names:
            rel = SUBSETS.get(n, n)
            self.dbs[n.replace("/", "-").replace(".", "_")] = self.root / rel
        self._counts: dict[str, int] | None = None

    def _env(self, subset: str):
        path = self.dbs[subset]
        if not (path / "data.mdb").is_file():
            raise AnnotationError(path, None, f"no LMDB here (data.mdb missing); TextZoom split "
                                              f"{self.split!r} expects <root>/{SUBSETS.get(subset, subset)}")
        return open_env(path)

    def _count(self, subset: str) -> int:
        with self._env(subset).begin(write=False) as txn:
            raw = txn.get(b"num-samples")
        try:
            return int(raw)
        except (TypeError, ValueError):
            raise AnnotationError(self.dbs[subset], None, f"'num-samples' is {raw!r}, expected an integer") from None

    def keys(self) -> list[str]:
        if self._counts is None:
            self._counts = {s: self._count(s) for s in self.dbs}
        return [f"{s}/{i:09d}" for s, n in self._counts.items() for i in range(1, n + 1)]

    def item(self, key: str) -> BenchItem:
        subset, _, idx = key.rpartition("/")
        i = int(idx)
        path = self.dbs[subset]
        with self._env(subset).begin(write=False) as txn:
            label = txn.get(b"label-%09d" % i)
            hr_b = txn.get(b"image_hr-%09d" % i)
            lr_b = txn.get(b"image_lr-%09d" % i)
        missing = [k for k, v in (("label", label), ("image_hr", hr_b), ("image_lr", lr_b)) if v is None]
        if missing:
            raise AnnotationError(path, i, f"record {i}: missing {', '.join(f'{m}-{i:09d}' for m in missing)}")
        try:
            text = label.decode("utf-8")
        except UnicodeDecodeError:
            raise AnnotationError(path, i, f"record {i}: label-{i:09d} is not UTF-8") from None
        hr, lr = _decode(hr_b), _decode(lr_b)
        for name, img in (("image_hr", hr), ("image_lr", lr)):
            if img is None:
                raise AnnotationError(path, i, f"record {i}: {name}-{i:09d} cannot be decoded as an image")
        h, w = hr.shape[:2]
        poly = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)
        meta = {"scale": 2, "subset": subset, "index": i, "hr_size": [h, w], "lr_size": list(lr.shape[:2]),
                "official_hr_size": list(OFFICIAL_HR_SIZE), "official_lr_size": list(OFFICIAL_LR_SIZE)}
        return BenchItem(key=key, hr=hr, lr=lr, texts=[TextInstance(poly, text)], meta=meta)



_ENVS: dict[str, object] = {}
_ENVS_PID: list[int] = [os.getpid()]


def open_env(path: Path):
    """The process's one read-only environment for ``path`` (py-lmdb refuses a second open of the
    same environment in a process, and an environment must not cross ``fork()``)."""
    import lmdb

    if _ENVS_PID[0] != os.getpid():
        _ENVS.clear()
        _ENVS_PID[0] = os.getpid()
    key = os.path.realpath(path)
    env = _ENVS.get(key)
    if env is None:
        try:
            env = lmdb.open(key, readonly=True, lock=False, readahead=False, meminit=False, max_readers=32)
        except lmdb.Error as e:
            raise AnnotationError(path, None, f"cannot open as LMDB ({e})") from None
        _ENVS[key] = env
    return env


def _decode(data: bytes) -> np.ndarray | None:
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return None if img is None else np.ascontiguousarray(img[:, :, ::-1])
