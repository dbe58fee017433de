"""Paired LR/HR super-resolution benchmarks in their published folder layouts.

``RealSRV3``
    RealSR (Cai et al., "Toward Real-World Single Image Super-Resolution: A New Benchmark and a New
    Model", ICCV 2019; https://github.com/csjcai/RealSR). Licence: the authors release it for
    research only (no explicit licence file; check their README before redistributing).
    Layout: ``<root>/{Canon,Nikon}/{Train,Test}/{2,3,4}/<Cam>_<NNN>_HR.png`` and
    ``<Cam>_<NNN>_LR{2,3,4}.png`` in the same folder. Key: ``<Cam>_<NNN>``.
    Verified: the csjcai/RealSR README says versions 1 and 2 have "HR the same resolution as LR"
    and version 3 has "HR and LR have different resolution", so V3 LR is HR/scale. Assumed: the
    V3 HR is cropped so that LR × scale == HR exactly (checked per item: a mismatch is an
    ``AnnotationError``). An LR of exactly the HR size (a V1/V2 folder, or an upsampled copy) is
    given as stored with ``meta["lr_is_hr_size"] = True``, not resized: the caller decides.
    Extras: ``camera`` (``canon`` | ``nikon`` | ``both``, default both), ``split`` (``test`` |
    ``train``, default test), ``scale`` (2/3/4, default 4).

``SRPairs``
    RealSR / DRealSR test crops as the diffusion-SR papers use them (StableSR, Wang et al. 2023,
    https://github.com/IceClear/StableSR, S-Lab licence; DRealSR: Wei et al., ECCV 2020,
    https://github.com/xiezw5/Component-Divide-and-Conquer-for-Real-World-Image-Super-Resolution).
    Layout: ``<root>/test_HR/<name>.png`` (512²) and ``<root>/test_LR/<name>.png`` (128²), paired
    by file stem. Assumed (not verified here): the released crops use identical names in both
    folders. For sets whose names differ by a suffix (DRealSR's own ``Canon_10_x4.png`` HR /
    ``Canon_10_x1.png`` LR) give ``hr_suffix: _x4`` and ``lr_suffix: _x1``; the key is the stem
    without the suffix. Extras: ``hr_dir`` (default ``test_HR``), ``lr_dir`` (default
    ``test_LR``), ``hr_suffix``, ``lr_suffix`` (default ``""``), ``scale`` (default 4).

``DIV2KValid``
    DIV2K (Agustsson & Timofte, NTIRE 2017; https://data.vision.ee.ethz.ch/cvl/DIV2K/), research
    use only. Layout: ``<root>/DIV2K_valid_HR/0801.png`` and
    ``<root>/DIV2K_valid_LR_bicubic/X4/0801x4.png``. Key: ``0801``. Extras: ``scale`` (2/3/4,
    default 4), ``split`` (``valid`` | ``train``, default valid), ``track`` (``bicubic`` |
    ``unknown``, default bicubic: the folder ``DIV2K_<split>_LR_<track>/X<scale>``).

``FolderBench``
    Any HR folder, with an optional LR folder and optional text annotations. Extras: ``hr_dir``
    (default: the root), ``lr_dir``, ``annotations`` (relative to the root unless absolute),
    ``scale``. Images pair by file stem (``evalkit.benches.images_by_stem``, as ``folder_pairs``).
    The annotations file is JSONL, one object per image::

        {"key": "<image stem>", "texts": [{"polygon": [[x, y], ...], "text": "OPEN", "dont_care": false}]}

    polygons in HR pixels with at least 4 points, ``dont_care`` optional (default false),
    ``language`` optional. Images absent from the file get ``texts = []`` (annotated set, no text).

Every pair loader checks LR × scale == HR per item and raises ``AnnotationError`` (path, problem)
through ``Loader.bad``; with ``skip_bad`` the item is skipped and counted in ``self.skipped``.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from evalkit.benches import BenchError, BenchItem, images_by_stem
from evalkit.loaders.base import AnnotationError, Loader, read_image
from evalkit.sample import TextInstance


def check_pair(hr: np.ndarray, lr: np.ndarray, scale: int, lr_path: Path, *, allow_same_size: bool = False) -> dict:
    """Check LR × scale == HR; returns meta additions. Same-size LR is allowed only when asked."""
    (hh, hw), (lh, lw) = hr.shape[:2], lr.shape[:2]
    if allow_same_size and (lh, lw) == (hh, hw):
        return {"lr_is_hr_size": True}
    if (lh * scale, lw * scale) != (hh, hw):
        raise AnnotationError(lr_path, None, f"LR is {lw}x{lh}, HR is {hw}x{hh}: expected LR x{scale} == HR "
                                             f"(LR {hw // scale}x{hh // scale}); is the scale right?")
    return {}


class _PairLoader(Loader):
    """Subclasses fill ``self._pairs`` (key -> (hr_path, lr_path)) in ``_list``."""

    has_lr = True
    default_scale = 4
    allow_same_size = False

    def __init__(self, entry, **kw):
        super().__init__(entry, **kw)
        self.scale = int(self.scale)
        self._pairs: dict[str, tuple[Path, Path]] | None = None

    def _list(self) -> dict[str, tuple[Path, Path]]:
        raise NotImplementedError

    def keys(self) -> list[str]:
        if self._pairs is None:
            self._pairs = self._list()
        return list(self._pairs)

    def item(self, key: str) -> BenchItem:
        if self._pairs is None:
            self.keys()
        hr_path, lr_path = self._pairs[key]
        hr, lr = read_image(hr_path), read_image(lr_path)
        meta = {"scale": self.scale, "lr_path": str(lr_path)}
        meta.update(check_pair(hr, lr, self.scale, lr_path, allow_same_size=self.allow_same_size))
        return BenchItem(key=key, hr=hr, lr=lr, hr_path=hr_path, meta=meta)

    def _need_dir(self, d: Path, what: str) -> Path:
        if not d.is_dir():
            raise AnnotationError(d, None, f"{what} folder not found (dataset {self.entry.name!r}, root {self.root})")
        return d


class RealSRV3(_PairLoader):
    allow_same_size = True
    CAMERAS = ("Canon", "Nikon")

    def __init__(self, entry, *, camera: str | None = None, **kw):
        super().__init__(entry, **kw)
        cam = str(camera or entry.extra.get("camera", "both")).lower()
        if cam not in ("both", "canon", "nikon"):
            raise ValueError(f"RealSR V3: camera {cam!r} unknown; expected canon, nikon or both")
        self.cameras = self.CAMERAS if cam == "both" else (cam.capitalize(),)
        split = str(self.split or "test").lower()
        if split not in ("train", "test"):
            raise ValueError(f"RealSR V3: split {split!r} unknown; expected train or test")
        self.split = split
        if self.scale not in (2, 3, 4):
            raise ValueError(f"RealSR V3: scale {self.scale} unknown; expected 2, 3 or 4")

    def _list(self) -> dict[str, tuple[Path, Path]]:
        out = {}
        for cam in self.cameras:
            d = self._need_dir(self.root / cam / self.split.capitalize() / str(self.scale), f"RealSR V3 {cam}")
            hrs = sorted(d.glob(f"{cam}_*_HR.png"))
            lrs = {p.name for p in d.glob(f"{cam}_*_LR{self.scale}.png")}
            for hr in hrs:
                key = hr.name[: -len("_HR.png")]
                lr = d / f"{key}_LR{self.scale}.png"
                if lr.name not in lrs:
                    self.bad(AnnotationError(hr, None, f"no LR image {lr.name} beside it"))
                    continue
                lrs.discard(lr.name)
                out[key] = (hr, lr)
            for name in sorted(lrs):
                self.bad(AnnotationError(d / name, None, f"no HR image {name.replace(f'_LR{self.scale}', '_HR')} beside it"))
        return out


class SRPairs(_PairLoader):
    def __init__(self, entry, **kw):
        super().__init__(entry, **kw)
        x = entry.extra
        self.hr_dir = self.root / x.get("hr_dir", "test_HR")
        self.lr_dir = self.root / x.get("lr_dir", "test_LR")
        self.hr_suffix, self.lr_suffix = str(x.get("hr_suffix", "")), str(x.get("lr_suffix", ""))

    def _strip(self, stem: str, suffix: str) -> str | None:
        if not suffix:
            return stem
        return stem[: -len(suffix)] if stem.endswith(suffix) else None

    def _list(self) -> dict[str, tuple[Path, Path]]:
        try:
            hr = images_by_stem(self._need_dir(self.hr_dir, "HR"), "HR")
            lr = images_by_stem(self._need_dir(self.lr_dir, "LR"), "LR")
        except BenchError as e:
            raise AnnotationError(self.root, None, str(e)) from None
        lr_by_key = {}
        for stem, p in lr.items():
            k = self._strip(stem, self.lr_suffix)
            if k is None:
                self.bad(AnnotationError(p, None, f"LR name does not end with lr_suffix {self.lr_suffix!r}"))
            else:
                lr_by_key[k] = p
        out = {}
        for stem, p in hr.items():
            k = self._strip(stem, self.hr_suffix)
            if k is None:
                self.bad(AnnotationError(p, None, f"HR name does not end with hr_suffix {self.hr_suffix!r}"))
            elif k not in lr_by_key:
                self.bad(AnnotationError(p, None, f"no LR image {k}{self.lr_suffix}.* in {self.lr_dir}"))
            else:
                out[_dotless(k)] = (p, lr_by_key.pop(k))
        for k, p in sorted(lr_by_key.items()):
            self.bad(AnnotationError(p, None, f"no HR image {k}{self.hr_suffix}.* in {self.hr_dir}"))
        return out


class DIV2KValid(_PairLoader):
    def __init__(self, entry, **kw):
        super().__init__(entry, **kw)
        self.split = str(self.split or "valid").lower()
        if self.split not in ("valid", "train"):
            raise ValueError(f"DIV2K: split {self.split!r} unknown; expected valid or train")
        self.track = str(entry.extra.get("track", "bicubic"))
        if self.scale not in (2, 3, 4):
            raise ValueError(f"DIV2K: scale {self.scale} unknown; expected 2, 3 or 4 (x8 is a separate track)")

    def _list(self) -> dict[str, tuple[Path, Path]]:
        hr_dir = self._need_dir(self.root / f"DIV2K_{self.split}_HR", "DIV2K HR")
        lr_dir = self._need_dir(self.root / f"DIV2K_{self.split}_LR_{self.track}" / f"X{self.scale}", "DIV2K LR")
        out = {}
        for hr in sorted(hr_dir.glob("*.png")):
            lr = lr_dir / f"{hr.stem}x{self.scale}.png"
            if not lr.is_file():
                self.bad(AnnotationError(hr, None, f"no LR image {lr}"))
                continue
            out[hr.stem] = (hr, lr)
        return out


_DOT = re.compile(r"\.")


def _dotless(stem: str) -> str:
    """webdataset keys carry no dots (STYLE.md); a stem like ``img.01`` becomes ``img_01``."""
    return _DOT.sub("_", stem)


class FolderBench(Loader):
    default_scale = None

    def __init__(self, entry, **kw):
        super().__init__(entry, **kw)
        x = entry.extra
        self.hr_dir = self._resolve(x.get("hr_dir")) or self.root
        self.lr_dir = self._resolve(x.get("lr_dir"))
        self.ann_path = self._resolve(x.get("annotations"))
        self.has_lr = self.lr_dir is not None
        self.has_texts = self.ann_path is not None
        if self.has_lr and not self.scale:
            raise ValueError(f"dataset {entry.name!r}: an lr_dir needs a scale (extra 'scale: 4')")
        self.scale = int(self.scale) if self.scale else None
        self._keys: dict[str, tuple[str, Path, Path | None]] | None = None  # key -> (stem, hr, lr)
        self._texts: dict[str, list[TextInstance]] = {}
        if self.ann_path is not None:
            self._texts = self._read_annotations(self.ann_path)

    def _resolve(self, p) -> Path | None:
        if not p:
            return None
        p = Path(p).expanduser()
        return p if p.is_absolute() else self.root / p

    def _read_annotations(self, path: Path) -> dict[str, list[TextInstance]]:
        if not path.is_file():
            raise AnnotationError(path, None, "annotations file not found")
        out: dict[str, list[TextInstance]] = {}
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    key, texts = _parse_annotation(line)
                except _BadLine as e:
                    self.bad(AnnotationError(path, n, str(e)))
                    continue
                if key in out:
                    self.bad(AnnotationError(path, n, f"key {key!r} annotated twice"))
                    continue
                out[key] = texts
        return out

    def keys(self) -> list[str]:
        if self._keys is None:
            try:
                hr = images_by_stem(self.hr_dir, "hr_dir")
                lr = images_by_stem(self.lr_dir, "lr_dir") if self.lr_dir else {}
            except BenchError as e:
                raise AnnotationError(self.hr_dir, None, str(e)) from None
            keys = {}
            for stem, p in hr.items():
                if self.lr_dir and stem not in lr:
                    self.bad(AnnotationError(p, None, f"no LR image {stem}.* in {self.lr_dir}"))
                    continue
                keys[_dotless(stem)] = (stem, p, lr.get(stem))
            for stem in sorted(set(self._texts) - set(hr)):
                self.bad(AnnotationError(self.ann_path, None, f"key {stem!r} has no image in {self.hr_dir}"))
            self._keys = keys
        return list(self._keys)

    def item(self, key: str) -> BenchItem:
        self.keys()
        stem, hr_path, lr_path = self._keys[key]
        hr = read_image(hr_path)
        lr, meta = None, {}
        if lr_path is not None:
            lr = read_image(lr_path)
            meta = {"scale": self.scale, "lr_path": str(lr_path), **check_pair(hr, lr, self.scale, lr_path)}
        texts = self._texts.get(stem, []) if self.has_texts else None
        return BenchItem(key=key, hr=hr, lr=lr, texts=texts, hr_path=hr_path, meta=meta)


class _BadLine(Exception):
    pass


def _parse_annotation(line: str) -> tuple[str, list[TextInstance]]:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        raise _BadLine(f"not valid JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("key"), str) or not isinstance(obj.get("texts", []), list):
        raise _BadLine('expected {"key": str, "texts": [{"polygon": [[x, y], ...], "text": str, "dont_care": bool}]}')
    texts = []
    for i, t in enumerate(obj.get("texts", [])):
        if not isinstance(t, dict) or "polygon" not in t or not isinstance(t.get("text", ""), str):
            raise _BadLine(f"texts[{i}]: expected an object with 'polygon' and 'text'")
        try:
            poly = np.asarray(t["polygon"], dtype=np.float32)
        except (TypeError, ValueError):
            poly = np.zeros((0,))
        if poly.ndim != 2 or poly.shape[1] != 2 or poly.shape[0] < 4 or not np.isfinite(poly).all():
            raise _BadLine(f"texts[{i}].polygon: expected at least 4 [x, y] points, got {t['polygon']!r}")
        texts.append(TextInstance(poly, t.get("text", ""), bool(t.get("dont_care", False)), str(t.get("language", ""))))
    return obj["key"], texts
