"""``synth inspect``: a build's counts and a contact sheet (LR | HR | mask with polygons, plus the
text-distorted HR and LR for GLYPH-SR corpora)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from synth.export import _decode, iter_samples, read_sample_images
from synth.shards import CorpusError, open_build


def summary_lines(out: Path) -> list[str]:
    """Human-readable counts of a build; raises CorpusError when ``out`` is not one."""
    out = Path(out)
    m = open_build(out)
    c = m["counts"]
    lines = [f"recipe {m['recipe']['name']} (hash {m['recipe_hash']}), seed {m['recipe']['seed']}, "
             f"{'complete' if m['complete'] else 'INCOMPLETE'}",
             f"samples: {c['kept']} kept of {c['requested']} requested, {c['failed']} failed; "
             f"{len(m['shards'])}/{m['num_shards']} shards"]
    if not m["complete"]:
        lines.append("  " + (missing_summary(m) or "the build stopped before it finished; continue with --resume"))
        if m.get("error"):
            e = m["error"]
            lines.append(f"  stopped by an unexpected error (a bug) in {e['key']}: "
                         f"{e['traceback'].rstrip().splitlines()[-1]}")
    for stage, reasons in c["rejected"].items():
        lines.append(f"  rejected at {stage}: " + ", ".join(f"{r} {n}" for r, n in sorted(reasons.items())))
    for k, v in list(m.get("examples", {}).items())[:12]:
        lines.append(f"  e.g. {k}: {v}")
    return lines


def missing_summary(manifest: dict) -> str:
    """One line: how many requested samples a build manifest lacks and why ("" when none)."""
    c = manifest["counts"]
    missing = c["requested"] - c["kept"]
    if missing <= 0:
        return ""
    why = []
    errors = c["rejected"].get("error", {})
    n_err = sum(errors.values())  # a bug ends its sample: one per key
    if n_err:
        why.append(f"{n_err} lost to unexpected errors ({', '.join(sorted(errors))}: a bug, traceback in the "
                   "build's log; once fixed, --resume rebuilds their shards)")
    if c["failed"] > n_err:
        why.append(f"{c['failed'] - n_err} rejected at every attempt (failed_keys in the manifest; the same "
                   "recipe gives the same result — raise max_attempts or change the sources)")
    unbuilt = missing - c["failed"]
    if unbuilt > 0:
        why.append(f"{unbuilt} not built yet ({len(manifest['shards'])}/{manifest['num_shards']} shards; "
                   "continue with --resume)")
    return f"{missing} of {c['requested']} requested samples are missing: " + "; ".join(why)


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
        raise CorpusError(f"{out}: the build has no samples to show")
    sep = np.full((4, rows[0].shape[1], 3), 255, np.uint8)
    sheet = np.concatenate([x for r in rows for x in (r, sep)][:-1], axis=0)
    png = Path(png)
    png.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(png), sheet[:, :, ::-1])
    return png
