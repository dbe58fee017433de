"""SR-pair benchmark loaders, each read back from a tiny fixture in its published layout."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data

from evalkit.benches import BenchItem
from evalkit.loaders.base import AnnotationError, Loader
from evalkit.loaders.ftsr import FTSRTadisr
from evalkit.loaders.srpairs import DIV2KValid, FolderBench, RealSRV3, SRPairs
from evalkit.loaders.synthlr import FIXED_LR_VERSION, FixedLR
from evalkit.loaders.textzoom import TextZoom
from models.cache import cache_key
from models.datasets import DatasetEntry
from models.files import sha256_file
from synth.degrade import DEGRADE_VERSION, get_preset, matlab_resize
from tests.helpers import photo_with_text, png_bytes, word_crop, write_png


def entry(root: Path, fmt: str, name: str = "bench", **extra) -> DatasetEntry:
    return DatasetEntry(name=name, format=fmt, root=str(root), extra=extra)


def crop(h: int, w: int, y: int = 0, x: int = 0) -> np.ndarray:
    return np.ascontiguousarray(skimage.data.astronaut()[y:y + h, x:x + w])


def down(img: np.ndarray, s: int) -> np.ndarray:
    return cv2.resize(img, (img.shape[1] // s, img.shape[0] // s), interpolation=cv2.INTER_AREA)


# ---------------------------------------------------------------- TextZoom

def write_textzoom(db: Path, words: list[str], corrupt: int | None = None) -> Path:
    """Official layout: num-samples, label-%09d, image_hr-%09d, image_lr-%09d, 1-based."""
    import lmdb

    db.mkdir(parents=True, exist_ok=True)
    env = lmdb.open(str(db), map_size=1 << 24)
    with env.begin(write=True) as txn:
        for i, w in enumerate(words, 1):
            hr = cv2.resize(word_crop(w, 28), (128, 32), interpolation=cv2.INTER_AREA)
            lr = cv2.resize(hr, (64, 16), interpolation=cv2.INTER_AREA)
            txn.put(b"label-%09d" % i, w.encode("utf-8"))
            txn.put(b"image_hr-%09d" % i, png_bytes(hr))
            txn.put(b"image_lr-%09d" % i, b"not a png" if i == corrupt else png_bytes(lr))
        txn.put(b"num-samples", str(len(words)).encode())
    env.close()
    return db


def test_textzoom_reads_official_lmdb(tmp_path):
    write_textzoom(tmp_path / "test" / "easy", ["OPEN", "café"])
    write_textzoom(tmp_path / "test" / "hard", ["EXIT"])
    write_textzoom(tmp_path / "test" / "medium", [])
    tz = TextZoom(entry(tmp_path, "textzoom", split="easy"))
    assert tz.keys() == ["easy/000000001", "easy/000000002"]
    items = list(tz.items())
    assert [it.texts[0].text for it in items] == ["OPEN", "café"]
    it = items[0]
    assert it.hr.shape == (32, 128, 3) and it.lr.shape == (16, 64, 3) and it.hr.dtype == np.uint8
    assert tz.scale == 2 and it.meta["hr_size"] == [32, 128] and it.meta["lr_size"] == [16, 64]
    np.testing.assert_array_equal(it.texts[0].polygon, [[0, 0], [128, 0], [128, 32], [0, 32]])
    both = TextZoom(entry(tmp_path, "textzoom"), split="test")
    assert both.keys() == ["easy/000000001", "easy/000000002", "hard/000000001"]
    assert both.item("hard/000000001").texts[0].text == "EXIT"


def test_textzoom_bad_record_named_and_skipped(tmp_path):
    db = write_textzoom(tmp_path / "train1", ["ONE", "TWO", "SIX"], corrupt=2)
    with pytest.raises(AnnotationError, match=r"train1:2: record 2: image_lr-000000002"):
        list(TextZoom(entry(tmp_path, "textzoom", split="train1")).items())
    tz = TextZoom(entry(tmp_path, "textzoom", split="train1"), skip_bad=True)
    assert [it.texts[0].text for it in tz.items()] == ["ONE", "SIX"]
    assert len(tz.skipped) == 1 and str(db) in tz.skipped[0]
    with pytest.raises(AnnotationError, match="data.mdb missing"):
        TextZoom(entry(tmp_path, "textzoom", split="hard")).keys()


# ---------------------------------------------------------------- RealSR V3

def write_realsr(root: Path, cam: str, n: int, scale: int = 4, split: str = "Test") -> Path:
    d = root / cam / split / str(scale)
    for i in range(1, n + 1):
        hr = crop(96, 128, 40 * i, 30 * i)
        write_png(d / f"{cam}_{i:03d}_HR.png", hr)
        write_png(d / f"{cam}_{i:03d}_LR{scale}.png", down(hr, scale))
    return d


def test_realsr_v3_pairs_and_cameras(tmp_path):
    write_realsr(tmp_path, "Canon", 2)
    write_realsr(tmp_path, "Nikon", 1)
    write_realsr(tmp_path, "Nikon", 1, scale=2)
    rs = RealSRV3(entry(tmp_path, "realsr-v3"))
    assert rs.keys() == ["Canon_001", "Canon_002", "Nikon_001"]
    it = rs.item("Canon_002")
    assert it.hr.shape == (96, 128, 3) and it.lr.shape == (24, 32, 3)
    assert it.hr_path.name == "Canon_002_HR.png" and it.meta["lr_path"].endswith("Canon_002_LR4.png")
    assert "lr_is_hr_size" not in it.meta
    assert RealSRV3(entry(tmp_path, "realsr-v3", camera="nikon", scale=2)).keys() == ["Nikon_001"]


def test_realsr_v3_same_size_lr_flagged_and_missing_lr(tmp_path):
    d = write_realsr(tmp_path, "Canon", 2)
    hr = cv2.imread(str(d / "Canon_001_HR.png"))
    cv2.imwrite(str(d / "Canon_001_LR4.png"), hr)  # V1/V2-style: LR at the HR size
    (d / "Canon_002_LR4.png").unlink()
    with pytest.raises(AnnotationError, match=r"Canon_002_HR.png: no LR image Canon_002_LR4.png"):
        RealSRV3(entry(tmp_path, "realsr-v3", camera="canon")).keys()
    rs = RealSRV3(entry(tmp_path, "realsr-v3", camera="canon"), skip_bad=True)
    items = list(rs.items())
    assert [it.key for it in items] == ["Canon_001"] and len(rs.skipped) == 1
    assert items[0].meta["lr_is_hr_size"] is True and items[0].lr.shape == items[0].hr.shape


# ---------------------------------------------------------------- test_HR / test_LR

def test_srpairs_stablesr_layout_and_size_check(tmp_path):
    for i, name in enumerate(["Canon_001", "Nikon_050"]):
        hr = crop(64, 64, 100 + 50 * i, 200)
        write_png(tmp_path / "test_HR" / f"{name}.png", hr)
        write_png(tmp_path / "test_LR" / f"{name}.png", down(hr, 4))
    sp = SRPairs(entry(tmp_path, "sr-pairs"))
    assert sp.keys() == ["Canon_001", "Nikon_050"]
    it = sp.item("Nikon_050")
    assert it.hr.shape == (64, 64, 3) and it.lr.shape == (16, 16, 3)
    np.testing.assert_array_equal(it.hr, crop(64, 64, 150, 200))
    write_png(tmp_path / "test_LR" / "Canon_001.png", crop(20, 16))  # 16x20 x4 != 64x64
    with pytest.raises(AnnotationError, match=r"test_LR/Canon_001.png: LR is 16x20, HR is 64x64"):
        list(SRPairs(entry(tmp_path, "sr-pairs")).items())
    sp = SRPairs(entry(tmp_path, "sr-pairs"), skip_bad=True)
    assert [it.key for it in sp.items()] == ["Nikon_050"] and len(sp.skipped) == 1


def test_srpairs_suffix_map(tmp_path):
    hr = crop(64, 96)
    write_png(tmp_path / "HR" / "Canon_10_x4.png", hr)
    write_png(tmp_path / "LR" / "Canon_10_x1.png", down(hr, 4))
    write_png(tmp_path / "HR" / "Canon_11_x4.png", hr)
    e = entry(tmp_path, "sr-pairs", hr_dir="HR", lr_dir="LR", hr_suffix="_x4", lr_suffix="_x1")
    with pytest.raises(AnnotationError, match=r"Canon_11_x4.png: no LR image Canon_11_x1"):
        SRPairs(e).keys()
    sp = SRPairs(e, skip_bad=True)
    assert sp.keys() == ["Canon_10"] and sp.item("Canon_10").lr.shape == (16, 24, 3)


# ---------------------------------------------------------------- DIV2K

def test_div2k_valid_names(tmp_path):
    for n in ("0801", "0802"):
        hr = crop(48, 64, int(n) - 700, 10)
        write_png(tmp_path / "DIV2K_valid_HR" / f"{n}.png", hr)
        write_png(tmp_path / "DIV2K_valid_LR_bicubic" / "X4" / f"{n}x4.png", down(hr, 4))
        write_png(tmp_path / "DIV2K_valid_LR_bicubic" / "X2" / f"{n}x2.png", down(hr, 2))
    dv = DIV2KValid(entry(tmp_path, "div2k-valid"))
    assert dv.keys() == ["0801", "0802"] and dv.item("0802").lr.shape == (12, 16, 3)
    assert DIV2KValid(entry(tmp_path, "div2k-valid", scale=2)).item("0801").lr.shape == (24, 32, 3)
    (tmp_path / "DIV2K_valid_LR_bicubic" / "X4" / "0802x4.png").unlink()
    with pytest.raises(AnnotationError, match=r"0802.png: no LR image .*0802x4.png"):
        DIV2KValid(entry(tmp_path, "div2k-valid")).keys()


# ---------------------------------------------------------------- generic folder

def test_folder_bench_with_annotations(tmp_path):
    for n in ("a", "b", "c"):
        hr = crop(64, 64, ord(n), 0)
        write_png(tmp_path / "hr" / f"{n}.png", hr)
        write_png(tmp_path / "lr" / f"{n}.png", down(hr, 4))
    poly = [[1, 2], [30, 2], [30, 12], [1, 12]]
    lines = [json.dumps({"key": "a", "texts": [{"polygon": poly, "text": "OPEN"},
                                                {"polygon": poly, "text": "###", "dont_care": True}]}),
             "",
             json.dumps({"key": "b", "texts": [{"polygon": [[0, 0], [1, 1]], "text": "x"}]}),
             "{not json"]
    (tmp_path / "ann.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    e = entry(tmp_path, "folder-bench", hr_dir="hr", lr_dir="lr", annotations="ann.jsonl", scale=4)
    with pytest.raises(AnnotationError, match=r"ann.jsonl:3: texts\[0\].polygon"):
        FolderBench(e)
    fb = FolderBench(e, skip_bad=True)
    assert len(fb.skipped) == 2 and "ann.jsonl:4: not valid JSON" in fb.skipped[1]
    assert fb.has_lr and fb.has_texts and fb.keys() == ["a", "b", "c"]
    a = fb.item("a")
    assert [(t.text, t.dont_care) for t in a.texts] == [("OPEN", False), ("###", True)]
    assert a.texts[0].polygon.shape == (4, 2) and a.lr.shape == (16, 16, 3)
    assert fb.item("c").texts == []
    hr_only = FolderBench(entry(tmp_path / "hr", "folder-bench"))
    assert not hr_only.has_lr and hr_only.item("b").lr is None and hr_only.item("b").texts is None


# ---------------------------------------------------------------- FTSR (TADiSR)

def write_ftsr(root: Path, n: int, scale: int = 4) -> None:
    for i in range(1, n + 1):
        name = f"{i:07d}.png"
        hr = crop(64, 96, 30 * i, 50)
        lr = down(hr, scale)
        write_png(root / "gt" / name, hr)
        write_png(root / "sr_bicubic" / name, cv2.resize(lr, (96, 64), interpolation=cv2.INTER_CUBIC))
        mask = np.zeros((64, 96), np.uint8)
        mask[10:30, 5 * i:40] = 255
        write_png(root / "mask" / name, mask)


def test_ftsr_tadisr_layout(tmp_path):
    write_ftsr(tmp_path, 3)
    with open(tmp_path / "index.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps({"file": f"{i:07d}.png", "key": f"ftsr-{i:09d}", "texts": ["SALE", "50%"]}) + "\n" for i in range(1, 4))
    ft = FTSRTadisr(entry(tmp_path, "ftsr-tadisr"))
    assert ft.keys() == ["0000001", "0000002", "0000003"] and not ft.has_lr
    it = ft.item("0000002")
    assert it.hr.shape == (64, 96, 3) and it.lr is None and it.texts is None
    assert it.mask.shape == (64, 96) and it.mask.dtype == np.uint8 and set(np.unique(it.mask)) == {0, 255}
    assert it.meta["lr_bicubic_path"].endswith("sr_bicubic/0000002.png")
    assert it.meta["text_strings"] == ["SALE", "50%"] and it.meta["source_key"] == "ftsr-000000002"
    lr = FTSRTadisr(entry(tmp_path, "ftsr-tadisr", lr_from_bicubic=True)).item("0000001")
    assert lr.lr.shape == (16, 24, 3) and lr.meta["lr_from_bicubic"]
    assert FTSRTadisr(entry(tmp_path, "ftsr-tadisr", index_range=[1, 3])).keys() == ["0000002", "0000003"]


def test_ftsr_split_subfolder_and_bad_inputs(tmp_path):
    write_ftsr(tmp_path / "test", 2)
    (tmp_path / "test" / "mask" / "0000002.png").unlink()
    (tmp_path / "test" / "index.jsonl").write_text('{"file": "0000001.png", "texts": ["A"]}\n[1, 2]\n')
    with pytest.raises(AnnotationError, match=r"index.jsonl:2: expected"):
        FTSRTadisr(entry(tmp_path, "ftsr-tadisr", split="test"))
    ft = FTSRTadisr(entry(tmp_path, "ftsr-tadisr", split="test"), skip_bad=True)
    assert ft.keys() == ["0000001"] and len(ft.skipped) == 2
    assert "gt/0000002.png: no mask/0000002.png" in ft.skipped[1]


def test_ftsr_reads_synth_export_output(tmp_path):
    """`synth export --layout tadisr` output, written by the project's own exporter from a shard
    written by the project's shard writer, reads back."""
    from synth import export as ex
    from synth.shards import AtomicShardWriter, shard_path
    from models.files import write_json_atomic

    corpus = tmp_path / "corpus"
    writer = AtomicShardWriter(shard_path(corpus, "ftsr", 0))
    for i in range(2):
        hr = crop(64, 64, 60 * i, 80)
        mask = np.zeros((64, 64), np.uint8)
        mask[5:20, 5:50] = 255
        writer.write(f"ftsr-{i:09d}", {"hr.png": png_bytes(hr), "lr.png": png_bytes(down(hr, 4)),
                                       "mask.png": png_bytes(mask),
                                       "json": json.dumps({"texts": [{"text": f"W{i}"}]}).encode()})
    count, digest = writer.close()
    write_json_atomic(corpus / "manifest.json", {"shards": [{"index": 0, "file": "shards/ftsr-000000.tar",
                                                             "count": count, "sha256": digest}]})
    dest, n = ex.export(tmp_path / "corpus", "tadisr", tmp_path / "tadisr")
    ft = FTSRTadisr(entry(dest, "ftsr-tadisr", lr_from_bicubic=True))
    assert n == 2 and ft.keys() == ["0000001", "0000002"]
    it = ft.item("0000002")
    np.testing.assert_array_equal(it.hr, crop(64, 64, 60, 80))
    assert it.meta["source_key"] == "ftsr-000000001" and it.meta["text_strings"] == ["W1"]
    assert it.lr.shape == (16, 16, 3) and it.mask.max() == 255


# ---------------------------------------------------------------- FixedLR

def hr_only(tmp_path: Path, sizes=((64, 64), (70, 90))) -> FolderBench:
    for i, (h, w) in enumerate(sizes):
        write_png(tmp_path / "hr" / f"img{i}.png", crop(h, w, 20 * i, 100))
    return FolderBench(entry(tmp_path / "hr", "folder-bench", name="mini"))


def lr_files(d: Path) -> list[Path]:
    return sorted(d.rglob("*.png"))


def test_fixed_lr_deterministic_cached_and_cropped(tmp_path):
    fl = FixedLR(hr_only(tmp_path), scale=4, preset="realesrgan", seed=3, cache_dir=tmp_path / "cache")
    info = fl.info()
    assert fl.has_lr and (info["preset"], info["scale"], info["seed"]) == ("realesrgan", 4, 3)
    assert info["preset_definition"] == get_preset("realesrgan").to_dict()
    assert info["preset_hash"] == cache_key(get_preset("realesrgan").to_dict())
    assert info["code_version"] == {"fixed_lr": FIXED_LR_VERSION, "degrade": DEGRADE_VERSION}
    json.dumps(info)
    a = fl.item("img0")
    d = tmp_path / "cache" / "mini" / "realesrgan-x4-seed3"
    [path] = lr_files(d)
    assert path.name == f"img0.{a.meta['lr_entry']}.png" and a.meta["lr_path"] == str(path)
    assert a.lr.shape == (16, 16, 3) and cv2.imread(str(path)).shape == (16, 16, 3)
    # the sidecar says what the entry was computed from
    rec = json.loads(path.with_suffix(".json").read_text())
    assert rec["hr"]["file_sha256"] == sha256_file(tmp_path / "hr" / "img0.png")
    assert rec["preset"] == info["preset_definition"] and rec["root"] == str((tmp_path / "hr").resolve())
    assert rec["params"]["preset"] == "realesrgan" and "stage1" in rec["params"]
    # the index finds the benchmark's LR per key
    idx = json.loads((d / "index" / "img0.json").read_text())
    assert idx["entry"] == a.meta["lr_entry"] and (d / "index" / idx["lr"]).resolve() == path.resolve()
    # same inputs, new loader: a cache hit, the file is neither rewritten nor replaced
    st = path.stat()
    # backdate it, so that a rewrite would show whatever the file system's time resolution
    os.utime(path, ns=(st.st_mtime_ns - 10**9, st.st_mtime_ns - 10**9))
    st = path.stat()
    first_bytes = path.read_bytes()
    again = FixedLR(hr_only(tmp_path), scale=4, preset="realesrgan", seed=3, cache_dir=tmp_path / "cache").item("img0")
    st2 = path.stat()
    assert (st2.st_ino, st2.st_mtime_ns) == (st.st_ino, st.st_mtime_ns) and path.read_bytes() == first_bytes
    np.testing.assert_array_equal(again.lr, a.lr)
    assert lr_files(d) == [path]
    # same seed, fresh cache -> same bytes and the same entry; other seed -> other LR
    fresh = FixedLR(hr_only(tmp_path), scale=4, preset="realesrgan", seed=3, cache_dir=tmp_path / "c2").item("img0")
    assert Path(fresh.meta["lr_path"]).read_bytes() == first_bytes and fresh.meta["lr_entry"] == a.meta["lr_entry"]
    np.testing.assert_array_equal(fresh.lr, a.lr)
    other = FixedLR(hr_only(tmp_path), scale=4, preset="realesrgan", seed=4, cache_dir=tmp_path / "c3").item("img0")
    assert not np.array_equal(other.lr, a.lr)
    # 70x90 is not divisible by 8: cropped bottom/right to 64x88; default preset: MATLAB bicubic
    b = FixedLR(hr_only(tmp_path), scale=8, cache_dir=tmp_path / "cache").item("img1")
    assert b.hr.shape == (64, 88, 3) and b.lr.shape == (8, 11, 3)
    assert b.meta["hr_crop"] == {"from": [70, 90], "to": [64, 88]} and b.meta["lr_preset"] == "matlab-bicubic"
    np.testing.assert_array_equal(b.hr, crop(70, 90, 20, 100)[:64, :88])
    np.testing.assert_array_equal(b.lr, matlab_resize.downscale(b.hr, 8))
    assert Path(b.meta["lr_path"]).parent == tmp_path / "cache" / "mini" / "matlab-bicubic-x8-seed0"


def test_fixed_lr_hr_edited_in_place_gets_a_new_lr(tmp_path):
    """The issue's bug: flipping an HR in place kept its old LR and bicubic PSNR fell to 14.7 dB."""
    hr_path = write_png(tmp_path / "hr" / "sign.png", photo_with_text("OPEN 24 HOURS")[256:])  # 256x512, words
    bench = lambda: FolderBench(entry(tmp_path / "hr", "folder-bench", name="signs"))
    old = FixedLR(bench(), scale=4, cache_dir=tmp_path / "cache").item("sign")
    write_png(hr_path, cv2.imread(str(hr_path))[::-1])  # flipped upside down, same name, same size
    new = FixedLR(bench(), scale=4, cache_dir=tmp_path / "cache").item("sign")
    assert new.meta["lr_entry"] != old.meta["lr_entry"] and new.meta["lr_path"] != old.meta["lr_path"]
    np.testing.assert_array_equal(new.lr, matlab_resize.downscale(new.hr, 4))

    def psnr_up(lr, hr):  # the bicubic baseline's PSNR: LR upsampled back to the HR size
        up = cv2.resize(lr, (hr.shape[1], hr.shape[0]), interpolation=cv2.INTER_CUBIC)
        return 10 * np.log10(255.0 ** 2 / np.mean((up.astype(np.float64) - hr) ** 2))

    assert psnr_up(new.lr, new.hr) > 20            # measured 20.9 dB, as before the flip
    assert abs(psnr_up(new.lr, new.hr) - psnr_up(old.lr, old.hr)) < 0.1
    assert psnr_up(old.lr, new.hr) < 10            # what reusing the stale LR scores (measured 5.5 dB)
    # both entries stay, the index names the current one
    idx = json.loads((Path(new.meta["lr_path"]).parent / "index" / "sign.json").read_text())
    assert idx["entry"] == new.meta["lr_entry"] and Path(old.meta["lr_path"]).is_file()


def test_fixed_lr_changed_preset_field_or_root_is_a_new_entry(tmp_path):
    fl = FixedLR(hr_only(tmp_path), scale=4, preset="realesrgan", seed=1, cache_dir=tmp_path / "cache")
    a = fl.item("img0")
    tweaked = FixedLR(hr_only(tmp_path), scale=4, preset="realesrgan", seed=1, cache_dir=tmp_path / "cache",
                      overrides={"jpeg_range2": (95, 95)})
    b = tweaked.item("img0")
    assert tweaked.info()["preset_hash"] != fl.info()["preset_hash"]
    assert tweaked.info()["preset_definition"]["jpeg_range2"] == [95, 95]
    assert b.meta["lr_entry"] != a.meta["lr_entry"] and Path(a.meta["lr_path"]).is_file()
    assert json.loads(Path(b.meta["lr_path"]).with_suffix(".json").read_text())["params"]["final"]["jpeg_quality"] == 95
    # the same images under another root: another entry, same pixels
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    os.rename(tmp_path / "hr", moved / "hr")
    c = FixedLR(FolderBench(entry(moved / "hr", "folder-bench", name="mini")), scale=4, preset="realesrgan", seed=1,
                cache_dir=tmp_path / "cache").item("img0")
    assert c.meta["lr_entry"] != a.meta["lr_entry"]
    np.testing.assert_array_equal(c.lr, a.lr)


def test_fixed_lr_entries_are_whole_files(tmp_path):
    """A torn entry (what a killed non-atomic writer leaves) is not trusted but remade whole; the
    writer leaves no temporary files and a PNG never lacks its JSON."""
    fl = FixedLR(hr_only(tmp_path), scale=4, cache_dir=tmp_path / "cache")
    a = fl.item("img0")
    path = Path(a.meta["lr_path"])
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])
    again = fl.item("img0")
    assert path.read_bytes() == whole
    np.testing.assert_array_equal(again.lr, a.lr)
    fl.item("img1")
    files = [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    assert not [p for p in files if p.name.startswith(".") or p.suffix == ".tmp"]
    assert all(p.with_suffix(".json").is_file() for p in files if p.suffix == ".png")


class ArrayLoader(Loader):
    """An HR-only set whose images live in memory (as in an LMDB), not in files of their own."""

    def __init__(self, root: Path, images: dict[str, np.ndarray]):
        super().__init__(DatasetEntry(name="arrays", format="arrays", root=str(root)))
        self.images = images

    def keys(self):
        return sorted(self.images)

    def item(self, key):
        return BenchItem(key=key, hr=self.images[key].copy())


def test_fixed_lr_hr_without_a_file_is_keyed_by_its_pixels(tmp_path):
    img = crop(64, 64, 200, 200)
    a = FixedLR(ArrayLoader(tmp_path, {"k": img}), scale=4, cache_dir=tmp_path / "cache").item("k")
    rec = json.loads(Path(a.meta["lr_path"]).with_suffix(".json").read_text())
    assert rec["hr"]["pixels_sha256"] == hashlib.sha256(img.tobytes()).hexdigest()
    hit = FixedLR(ArrayLoader(tmp_path, {"k": img}), scale=4, cache_dir=tmp_path / "cache").item("k")
    assert hit.meta["lr_entry"] == a.meta["lr_entry"]
    edited = img.copy()
    edited[10:20, 10:20] = 0
    b = FixedLR(ArrayLoader(tmp_path, {"k": edited}), scale=4, cache_dir=tmp_path / "cache").item("k")
    assert b.meta["lr_entry"] != a.meta["lr_entry"]
    np.testing.assert_array_equal(b.lr, matlab_resize.downscale(edited, 4))


def test_fixed_lr_refuses_real_lr_and_bad_scale(tmp_path):
    write_realsr(tmp_path, "Canon", 1)
    with pytest.raises(ValueError, match="already has real LR"):
        FixedLR(RealSRV3(entry(tmp_path, "realsr-v3", camera="canon")), scale=4, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="scale 3 not supported"):
        FixedLR(hr_only(tmp_path), scale=3, cache_dir=tmp_path)
