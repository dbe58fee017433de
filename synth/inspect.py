"""``synth inspect``: a build's counts and a contact sheet (LR | HR | mask with polygons, plus the
text-distorted HR and LR for GLYPH-SR corpora)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from synth.export import _decode, iter_samples, read_sample_images
from synth.shards import read_manifest


def summary_lines(out: Path) -> list[str]:
    m = read_manifest(Path(out))
    if m is None:
        raise FileNotFoundError(f"{out}: no manifest.json — not a synth build output directory")
    c = m["counts"]
    lines = [f"recipe {m['recipe']['name']} (hash {m['recipe_hash']}), seed {m['recipe']['seed']}, "
             f"{'complete' if m['complete'] else 'INCOMPLETE (resume with --resume)'}",
             f"samples: {c['kept']} kept of {c['requested']} requested, {c['failed']} failed; "
             f"{len(m['shards'])}/{m['num_shards']} shards"]
    for stage, reasons in c["rejected"].items():
        lines.append(f"  rejected at {stage}: " + ", ".join(f"{r} {n}" for r, n in sorted(reasons.items())))
    for k, v in list(m.get("examples", {}).items())[:12]:
        lines.append(f"  e.g. {k}: {v}")
    return lines


def contact_sheet(out: Path, png: Path, n: int = 8, tile: int = 256) -> Path:
    """Rows of [LR (nearest-upscaled) | HR | mask with instance polygons] and, for glyph corpora,
    [| HR text-distorted | LR text-distorted], each labelled."""
    rows = []
    for key, fields in iter_samples(Path(out)):
        if len(rows) == n:
            break
        hr, lr, mask, meta = read_sample_images(fields)
        s = tile / hr.shape[0]
        lr_t = cv2.resize(lr, (tile, tile), interpolation=cv2.INTER_NEAREST)
        hr_t = cv2.resize(hr, (tile, tile), interpolation=cv2.INTER_AREA)
        m_t = cv2.cvtColor(cv2.resize(mask, (tile, tile), interpolation=cv2.INTER_AREA), cv2.COLOR_GRAY2RGB)
        for t in meta["texts"]:
            poly = np.round(np.array(t["polygon"]) * s).astype(np.int32)
            cv2.polylines(m_t, [poly], True, (255, 64, 64), 1)
            cv2.polylines(hr_t, [poly], True, (255, 64, 64), 1)
        panels = [(lr_t, f"LR x{meta['scale']}"), (hr_t, key), (m_t, "mask")]
        if "hr_tdist.png" in fields:
            hd = cv2.resize(_decode(fields["hr_tdist.png"], cv2.IMREAD_COLOR)[:, :, ::-1], (tile, tile),
                            interpolation=cv2.INTER_AREA)
            ld = cv2.resize(_decode(fields["lr_tdist.png"], cv2.IMREAD_COLOR)[:, :, ::-1], (tile, tile),
                            interpolation=cv2.INTER_NEAREST)
            for k, t in enumerate(meta["texts"][:6]):
                cv2.putText(hd, t.get("text_distorted", "")[:24], (4, 32 + 14 * k), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                            (255, 64, 255), 1, cv2.LINE_AA)
            panels += [(hd, "HR text-distorted"), (ld, "LR text-distorted")]
        for img, label in panels:
            cv2.putText(img, label, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 0), 1, cv2.LINE_AA)
        gap = np.full((tile, 4, 3), 255, np.uint8)
        rows.append(np.concatenate([x for img, _ in panels for x in (img, gap)][:-1], axis=1))
    if not rows:
        raise ValueError(f"{out}: the build has no samples to show")
    sep = np.full((4, rows[0].shape[1], 3), 255, np.uint8)
    sheet = np.concatenate([x for r in rows for x in (r, sep)][:-1], axis=0)
    png = Path(png)
    png.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(png), sheet[:, :, ::-1])
    return png
