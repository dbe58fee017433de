"""``synth export``: corpus shards -> other projects' folder layouts.

Layouts: ``tadisr`` (:func:`export_tadisr`), ``vosr`` (:func:`export_vosr`).
A directory that is not a finished-or-partial build, or whose shards are gone, is a
:class:`CorpusError` raised before anything is written."""
from __future__ import annotations

import itertools
import json
import tarfile
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from synth.shards import AtomicShardWriter, CorpusError, build_shards, open_build

LAYOUTS = ("tadisr", "vosr")


def iter_samples(out: Path) -> Iterator[tuple[str, dict[str, bytes]]]:
    """(key, {field: bytes}) for every sample of a build, in shard and key order, read with the
    standard library (webdataset reads the same files)."""
    out = Path(out)
    for shard in build_shards(out, open_build(out)):
        yield from iter_shard(shard)


def iter_shard(shard: Path) -> Iterator[tuple[str, dict[str, bytes]]]:
    """(key, {field: bytes}) for every sample of one shard, in order."""
    with tarfile.open(shard) as tar:
        key, fields = None, {}
        for m in tar:
            k, _, field = m.name.partition(".")
            if key is not None and k != key:
                yield key, fields
                fields = {}
            key = k
            fields[field] = tar.extractfile(m).read()
        if key is not None:
            yield key, fields


def _decode(data: bytes, flags=cv2.IMREAD_UNCHANGED, what: str = "image") -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    if img is None:
        raise ValueError(f"{what} is not a decodable image")
    return img


def export_tadisr(out: Path, dest: Path) -> int:
    """TADiSR's loader layout: ``gt/NNNNNNN.png`` (HR), ``sr_bicubic/NNNNNNN.png`` (LR
    bicubic-upsampled to the HR size, OpenCV bicubic), ``mask/NNNNNNN.png`` (grey 0/255), 7-digit
    1-based names in shard order; ``index.jsonl`` maps each number to its key and texts."""
    dest = Path(dest)
    if dest.exists() and not dest.is_dir():
        raise CorpusError(f"--dest {dest} is a file; give a directory")
    samples = iter_samples(out)
    first = next(samples, None)  # reads the manifest: a bad --out fails before anything is created
    if first is None:
        raise CorpusError(f"{out}: the build has no samples to export")
    for d in ("gt", "sr_bicubic", "mask"):
        (dest / d).mkdir(parents=True, exist_ok=True)
    n = 0
    with open(dest / "index.jsonl", "w", encoding="utf-8") as index:
        for key, f in itertools.chain([first], samples):
            n += 1
            name = f"{n:07d}.png"
            hr = _decode(f["hr.png"])
            lr = _decode(f["lr.png"])
            up = cv2.resize(lr, (hr.shape[1], hr.shape[0]), interpolation=cv2.INTER_CUBIC)
            (dest / "gt" / name).write_bytes(f["hr.png"])
            cv2.imwrite(str(dest / "sr_bicubic" / name), up)
            (dest / "mask" / name).write_bytes(f["mask.png"])
            meta = json.loads(f["json"])
            index.write(json.dumps({"file": name, "key": key, "texts": [t["text"] for t in meta["texts"]]},
                                   ensure_ascii=False) + "\n")
    return n


def export_vosr(out: Path, dest: Path) -> int:
    """VOSR's webdataset training layout (Wu et al., CVPR 2026; github.com/cswry/VOSR, Apache-2.0).

    VOSR's ``dataloaders/realsr_dataset.py::build_webdataset_pipeline`` globs ``<folder>/*.tar``
    (one level, one folder per line of its dataset txt: ``<folder>, <weight>``), runs
    ``ResampledShards -> split_by_node -> split_by_worker -> tarfile_to_samples -> shuffle ->
    decode("rgb8")`` and keeps, per sample, the first key that *equals* one of ``jpg png jpeg bmp
    webp``; a sample without one is dropped silently. Our members ``<key>.hr.png`` give the key
    ``hr.png``, so a ``synth build`` corpus as it is yields no sample at all (an endless, empty
    stream). VOSR makes its LR itself (Real-ESRGAN degradations on the GPU), so it needs the HR only.

    Writes ``<dest>/<shard file name>`` for each shard of the build, same name, same samples in
    the same order, each sample one member ``<key>.png`` holding the build's ``hr.png`` bytes
    unchanged (pixel-identical after VOSR's decode), through :class:`AtomicShardWriter`.
    Point a line of VOSR's txt at ``dest``. A ``.tar`` already in ``dest`` that this export would
    not write is a :class:`CorpusError` (VOSR's glob would mix it in)."""
    dest = Path(dest)
    if dest.exists() and not dest.is_dir():
        raise CorpusError(f"--dest {dest} is a file; give a directory")
    shards = build_shards(out, open_build(out))
    if not shards:
        raise CorpusError(f"{out}: the build has no samples to export")
    names = [Path(str(s)).name for s in shards]
    if any(Path(str(s)).parent.resolve() == dest.resolve() for s in shards):
        raise CorpusError(f"--dest {dest} is the build's own shard folder; give another directory")
    if dest.is_dir():
        stray = sorted(p.name for p in dest.glob("*.tar") if p.name not in names)
        if stray:
            raise CorpusError(f"--dest {dest} already holds {len(stray)} other shard(s) ({', '.join(stray[:3])}) "
                              "that VOSR would read too; give an empty directory")
    n = 0
    dest.mkdir(parents=True, exist_ok=True)
    for shard, name in zip(shards, names):
        with AtomicShardWriter(dest / name) as w:
            for key, fields in iter_shard(shard):
                if "hr.png" not in fields:
                    raise CorpusError(f"{shard}: sample {key!r} has no hr.png member (fields: "
                                      f"{', '.join(sorted(fields))}); is this a synth build shard?")
                w.write(key, {"png": fields["hr.png"]})
            w.close()
        n += w.count
    return n


_EXPORTERS = {"tadisr": export_tadisr, "vosr": export_vosr}


def export(out: Path, layout: str, dest: Path | None = None) -> tuple[Path, int]:
    if layout not in LAYOUTS:
        raise CorpusError(f"unknown export layout {layout!r} (known: {', '.join(LAYOUTS)})")
    dest = Path(dest) if dest else Path(out) / layout
    return dest, _EXPORTERS[layout](Path(out), dest)


def read_sample_images(fields: dict[str, bytes]) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """(hr RGB, lr RGB, mask, meta) from one sample's fields; ValueError naming an undecodable field,
    KeyError for a missing one."""
    hr = _decode(fields["hr.png"], cv2.IMREAD_COLOR, "hr.png")[:, :, ::-1]
    lr = _decode(fields["lr.png"], cv2.IMREAD_COLOR, "lr.png")[:, :, ::-1]
    mask = _decode(fields["mask.png"], cv2.IMREAD_GRAYSCALE, "mask.png")
    return hr, lr, mask, json.loads(fields["json"])
