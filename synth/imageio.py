"""Decoding source images with the checks a long build needs: a bad file is a counted reason,
never a crash. All images leave here as RGB HxWx3 uint8."""
from __future__ import annotations

import io

import cv2
import numpy as np

from synth.types import Rejected


def decode_image(data: bytes | np.ndarray, *, stage: str, what: str, allow_gray: bool) -> np.ndarray:
    """Bytes (any format OpenCV or PIL reads) or an array -> RGB uint8.

    Policy, applied the same to every source:
    - unreadable / corrupt: Rejected("unreadable").
    - 16-bit: scaled to 8 bits (x / 257, rounded) — high-bit-depth HR photos are legitimate.
    - grayscale: converted to RGB when ``allow_gray`` (text crops), else Rejected("grayscale")
      (a colour HR corpus must not learn grey backgrounds).
    - RGBA: alpha dropped when fully opaque, else Rejected("transparent") — what lies behind
      transparent pixels is undefined.
    """
    if isinstance(data, np.ndarray):
        img = data
    else:
        img = None
        buf = np.frombuffer(data, np.uint8)
        if buf.size:
            img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
            if img is not None:
                if img.ndim == 3 and img.shape[2] == 3:
                    img = img[:, :, ::-1]
                elif img.ndim == 3 and img.shape[2] == 4:
                    img = img[:, :, [2, 1, 0, 3]]
        if img is None:  # formats cv2 lacks (e.g. some GIF/palette files): PIL as a fallback
            try:
                from PIL import Image

                with Image.open(io.BytesIO(data)) as im:
                    im.load()
                    if im.mode == "P":
                        im = im.convert("RGBA")
                    img = np.asarray(im)
            except Exception as e:  # noqa: BLE001 — any decoder failure is the same reason
                raise Rejected(stage, "unreadable", f"{what}: {type(e).__name__}: {e}") from None
    img = np.ascontiguousarray(img)
    if img.dtype == bool:
        img = img.astype(np.uint8) * 255
    if img.dtype == np.uint16:
        img = np.round(img.astype(np.float32) / 257.0).astype(np.uint8)
    elif img.dtype != np.uint8:
        if np.issubdtype(img.dtype, np.floating) and img.size and 0 <= img.min() and img.max() <= 1:
            img = np.round(img * 255).astype(np.uint8)
        else:
            raise Rejected(stage, "unsupported-dtype", f"{what}: {img.dtype}")
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim == 2:
        if not allow_gray:
            raise Rejected(stage, "grayscale", what)
        return np.repeat(img[:, :, None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] not in (3, 4):
        raise Rejected(stage, "unsupported-shape", f"{what}: {img.shape}")
    if img.shape[2] == 4:
        if img[:, :, 3].min() < 255:
            raise Rejected(stage, "transparent", what)
        img = np.ascontiguousarray(img[:, :, :3])
    if min(img.shape[:2]) == 0:
        raise Rejected(stage, "empty-image", what)
    return img


def encode_png(img: np.ndarray) -> bytes:
    """RGB uint8 or single-channel uint8 -> PNG bytes, deterministic (fixed compression level)."""
    if img.ndim == 3:
        img = img[:, :, ::-1]
    ok, buf = cv2.imencode(".png", img, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()
