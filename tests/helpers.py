"""Fixture builders shared by tests: real photos, real fonts, datasets in published layouts."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont


def dejavu(size: int, bold: bool = True) -> ImageFont.FreeTypeFont:
    import matplotlib

    name = "DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf"
    return ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / name), size)


def word_crop(text: str, size: int = 40, fg=(20, 20, 20), bg=(235, 230, 220)) -> np.ndarray:
    """A real rendered word crop (RGB uint8) with a few px of margin."""
    font = dejavu(size)
    x0, y0, x1, y1 = font.getbbox(text)
    im = Image.new("RGB", (x1 - x0 + 16, y1 - y0 + 16), bg)
    ImageDraw.Draw(im).text((8 - x0, 8 - y0), text, font=font, fill=fg)
    return np.asarray(im).copy()


def photo_with_text(text: str = "OPEN 24 HOURS") -> np.ndarray:
    import skimage.data

    img = Image.fromarray(skimage.data.astronaut())
    d = ImageDraw.Draw(img)
    d.rectangle([20, 380, 492, 470], fill=(250, 250, 250))
    d.text((35, 392), text, font=dejavu(56), fill=(10, 10, 10))
    return np.asarray(img).copy()


def write_png(path: Path, img: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if img.ndim == 3:
        img = img[:, :, ::-1] if img.shape[2] == 3 else img[:, :, [2, 1, 0, 3]]
    assert cv2.imwrite(str(path), img)
    return path


def write_ctr_lmdb(root: Path, items: list[tuple[bytes, str]]) -> Path:
    """CTR layout: num-samples, image-%09d (encoded bytes), label-%09d, 1-based."""
    import lmdb

    root.mkdir(parents=True, exist_ok=True)
    env = lmdb.open(str(root), map_size=1 << 26)
    with env.begin(write=True) as txn:
        for i, (img, label) in enumerate(items, 1):
            txn.put(f"image-{i:09d}".encode(), img)
            txn.put(f"label-{i:09d}".encode(), label.encode("utf-8"))
        txn.put(b"num-samples", str(len(items)).encode())
    env.close()
    return root


def png_bytes(img: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", img[:, :, ::-1] if img.ndim == 3 else img)
    assert ok
    return buf.tobytes()


def background_folder_with_bad_inputs(bg: Path) -> Path:
    """Three usable photos (one 16-bit) and one file of each kind a build must skip."""
    import skimage.data

    write_png(bg / "astronaut.png", skimage.data.astronaut()[:300, 100:420])
    write_png(bg / "retina.png", cv2.resize(skimage.data.retina(), (320, 320), interpolation=cv2.INTER_AREA))
    write_png(bg / "ihc.png", skimage.data.immunohistochemistry()[:280, :300])
    write_png(bg / "deep16.png", skimage.data.rocket()[:300, :300].astype(np.uint16) * 257)
    write_png(bg / "grey.png", skimage.data.camera())
    write_png(bg / "small.png", skimage.data.chelsea()[:100, :100])
    write_png(bg / "transparent.png", np.dstack([skimage.data.coffee()[:300, :300], np.full((300, 300), 128, np.uint8)]))
    (bg / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    return bg


def text_corpus(out: Path, num: int, font_size_px=(26, 40), preset: str = "cv2-bicubic") -> Path:
    """A small real synth corpus in ``out``: 256² HR photos with 2–3 large, straight, English rendered
    words (GT polygons, OCR-readable on HR), ×4 LR made by ``preset``, 4 samples per shard."""
    from models.datasets import load_catalog
    from pipelines.build import build
    from pipelines.executors import LocalExecutor
    from synth.recipe import load_recipe

    lo, hi = font_size_px
    recipe = load_recipe("ftsr", ["backgrounds.hr_size=256", "text.rendered_prob=1.0", "text.instances=[2, 3]",
                                  "text.rendered.languages={en: 1.0}", f"text.rendered.font_size_px=[{lo}, {hi}]",
                                  "text.rendered.rotation_deg=[0, 0]", "text.rendered.curvature=[0, 0]",
                                  f"degrade.preset={preset}", "samples_per_shard=4"])
    build(recipe, out, num, executor=LocalExecutor(recipe, catalog=load_catalog()), progress=False)
    return out


def run_evalkit(*args, env: dict | None = None, timeout: int = 600):
    """``evalkit ARGS`` in a subprocess (the real entry point), the environment extended by ``env``;
    the CompletedProcess (text stdout/stderr), not checked."""
    import os
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-c", "from pipelines.cli import main_evalkit; main_evalkit()", *args],
                          check=False, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def words_on_one_line(words=("OPEN", "NOW", "24")) -> tuple[np.ndarray, list[np.ndarray]]:
    """An RGB 160×720 image with ``words`` drawn on one line (a space-wide gap, so OCR reads one
    line) and each word's own ink box (4×2 float32 quad, TL TR BR BL) — word-level ground truth."""
    img = np.full((160, 720, 3), 235, np.uint8)
    font, scale, thick = cv2.FONT_HERSHEY_SIMPLEX, 2.0, 5
    boxes, x = [], 30
    for word in words:
        cv2.putText(img, word, (x, 100), font, scale, (15, 15, 15), thick, cv2.LINE_AA)
        (w, h), _ = cv2.getTextSize(word, font, scale, thick)
        boxes.append(np.array([[x, 100 - h - 4], [x + w, 100 - h - 4], [x + w, 106], [x, 106]], np.float32))
        x += w + 28
    return img, boxes
