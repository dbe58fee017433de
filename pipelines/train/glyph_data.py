"""A GLYPH-SR corpus (``synth build --recipe glyph``) streamed for training the Text-ControlNet.

Per sample (members ``hr.png``, ``json`` and the subset members in use; the order, rank split,
resume and skip counting are :class:`pipelines.train.data.CorpusStream`'s):

- the input subset is drawn from the sample's own generator (seeded by (seed, epoch, key), so the
  choice is a function of the seed and survives a resume), with probabilities proportional to
  ``subset_weights`` over ``text_clean/image_clean`` (``hr.png``), ``text_clean/image_degraded``
  (``lr.png``), ``text_distorted/image_clean`` (``hr_tdist.png``), ``text_distorted/image_degraded``
  (``lr_tdist.png``); the choice is recorded (``GlyphSample.subset``, the batch's ``"subsets"``);
- an LR member (×``scale`` smaller than ``hr.png``) is upsampled to the HR size with OpenCV
  ``cv2.resize(..., INTER_CUBIC)`` on float32 in [0, 1], then clipped to [0, 1] — the whole image
  first, then cropped, so the crop border sees the same pixels as the full-image upsampling at
  inference; this is the ControlNet image (``cond``);
- the target is ``hr.png``; the prompt is the JSON's ``glyph.guidance.prompt`` (scene caption +
  the verbalised OCR of the LR: the *noisy* prompt the model is given at inference);
- one aligned random crop of ``hr_crop`` HR px (offset a multiple of the corpus scale, for every
  subset), drawn after the subset; for evaluation (``rng`` None) the ``eval_subset`` and a crop centred on the first text.

A corpus whose manifest recipe has no ``glyph`` section is a one-line
:class:`~synth.shards.CorpusError`; a sample whose JSON has no ``glyph`` entry, or whose images do
not fit, is skipped and counted as ``undecodable``; one missing a member as ``missing-<member>``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipelines.train.data import CorpusStream, fixed_batch, polygon_quad
from synth.shards import CorpusError
from synth.stages.glyph import SUBSETS

DEFAULT_EVAL_SUBSET = "text_clean/image_degraded"


@dataclass
class GlyphSample:
    key: str
    subset: str        # the SUBSETS name the control image came from
    cond: np.ndarray   # 3×H×W float32 [0, 1]: the subset member at HR size (the ControlNet image)
    hr: np.ndarray     # 3×H×W float32 [0, 1]: the target (hr.png)
    prompt: str        # the Text-ControlNet prompt (guidance "prompt")


def subset_probs(weights: dict) -> tuple[list[str], np.ndarray]:
    """``{subset: weight >= 0}`` (missing subsets weigh 0) -> (names, probabilities) over the subsets
    with positive weight, in SUBSETS order. ValueError naming a bad entry."""
    unknown = [k for k in weights if k not in SUBSETS]
    if unknown:
        raise ValueError(f"subset_weights: unknown subset {unknown[0]!r}; known: {', '.join(SUBSETS)}")
    bad = [k for k, v in weights.items() if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0]
    if bad:
        raise ValueError(f"subset_weights: {bad[0]}={weights[bad[0]]!r} must be a number >= 0")
    names = [k for k in SUBSETS if weights.get(k, 0) > 0]
    if not names:
        raise ValueError("subset_weights: every subset has weight 0; give at least one a positive weight")
    w = np.array([float(weights[k]) for k in names])
    return names, w / w.sum()


def _read(fields: dict, member: str) -> np.ndarray:
    import cv2

    img = cv2.imdecode(np.frombuffer(fields[member], np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError(f"{member} is not a decodable image")
    return np.ascontiguousarray(img[:, :, ::-1]).astype(np.float32) * np.float32(1 / 255)


class GlyphDecoder:
    """``(key, fields, hr_crop, rng | None) -> GlyphSample`` (see the module docstring)."""

    def __init__(self, subset_weights: dict, eval_subset: str = DEFAULT_EVAL_SUBSET):
        self.names, self.probs = subset_probs(subset_weights)
        if eval_subset not in SUBSETS:
            raise ValueError(f"eval_subset {eval_subset!r}: not a subset; known: {', '.join(SUBSETS)}")
        self.eval_subset = eval_subset

    def fields(self, train: bool = True) -> tuple[str, ...]:
        used = self.names if train else [self.eval_subset]
        return ("hr.png", "json", *sorted({SUBSETS[n] for n in used} - {"hr.png"}))

    def __call__(self, key: str, fields: dict, hr_crop: int, rng: np.random.Generator | None) -> GlyphSample:
        import json

        import cv2

        meta = json.loads(fields["json"])
        glyph = meta.get("glyph")
        if not glyph:
            raise ValueError(f"{key}: the sample JSON has no 'glyph' entry (not a `--recipe glyph` sample)")
        subset = self.eval_subset if rng is None else self.names[int(rng.choice(len(self.names), p=self.probs))]
        member = glyph.get("subsets", SUBSETS).get(subset, SUBSETS[subset])
        hr = _read(fields, "hr.png")
        H, W = hr.shape[:2]
        cond = hr if member == "hr.png" else _read(fields, member)
        h, w = cond.shape[:2]
        s = int(meta.get("scale") or H // h)  # the corpus's ×scale: crops on whole LR pixels for every subset
        if (h, w) != (H, W) and (s < 1 or h * s != H or w * s != W):
            raise ValueError(f"{key}: {member} {h}×{w} is neither hr.png's {H}×{W} nor that divided by {s}")
        if (h, w) != (H, W):
            cond = np.clip(cv2.resize(cond, (W, H), interpolation=cv2.INTER_CUBIC), 0, 1)
        if hr_crop % s or H < hr_crop or W < hr_crop:
            raise ValueError(f"{key}: cannot take a {hr_crop}² crop (a multiple of the scale {s}) from {H}×{W}")
        ny, nx = (H - hr_crop) // s, (W - hr_crop) // s
        if rng is None:  # centred on the first text (the image centre without text), clamped
            quads = [polygon_quad(t["polygon"]) for t in meta.get("texts", []) if t.get("polygon")]
            cx, cy = quads[0].mean(0) if quads else (W / 2, H / 2)
            y0 = int(np.clip(round((cy - hr_crop / 2) / s), 0, ny)) * s
            x0 = int(np.clip(round((cx - hr_crop / 2) / s), 0, nx)) * s
        else:
            y0, x0 = int(rng.integers(0, ny + 1)) * s, int(rng.integers(0, nx + 1)) * s
        crop = (slice(y0, y0 + hr_crop), slice(x0, x0 + hr_crop))
        return GlyphSample(key, subset, np.ascontiguousarray(cond[crop].transpose(2, 0, 1)),
                           np.ascontiguousarray(hr[crop].transpose(2, 0, 1)), str(glyph["guidance"]["prompt"]))


def collate(samples: list[GlyphSample]) -> dict:
    """-> {"keys", "subsets", "prompts": [str], "cond" N×3×H×W, "hr" N×3×H×W (float32 tensors in [0, 1])}."""
    import torch

    return {"keys": [s.key for s in samples], "subsets": [s.subset for s in samples],
            "prompts": [s.prompt for s in samples],
            "cond": torch.from_numpy(np.stack([s.cond for s in samples])),
            "hr": torch.from_numpy(np.stack([s.hr for s in samples]))}


def check_glyph_build(stream: CorpusStream):
    recipe = stream.manifest.get("recipe") or {}
    if "glyph" not in recipe:
        raise CorpusError(f"--data {stream.corpus}: not a GLYPH-SR corpus (its recipe "
                          f"{recipe.get('name', '?')!r} has no 'glyph' section); build one with "
                          "`synth build --recipe glyph`")


class GlyphStream(CorpusStream):
    """:class:`CorpusStream` of a glyph build yielding :class:`GlyphSample`; ``subset_weights``:
    ``{subset: weight}`` (default: equal)."""

    def __init__(self, corpus, *, hr_crop: int, subset_weights: dict | None = None,
                 eval_subset: str = DEFAULT_EVAL_SUBSET, train: bool = True, **kw):
        dec = GlyphDecoder(subset_weights if subset_weights is not None else dict.fromkeys(SUBSETS, 1.0), eval_subset)
        super().__init__(corpus, hr_crop=hr_crop, fields=dec.fields(train), decoder=dec, collate=collate, **kw)
        check_glyph_build(self)


def glyph_fixed_batch(corpus, n: int, hr_crop: int, eval_subset: str = DEFAULT_EVAL_SUBSET) -> dict:
    """The first ``n`` usable samples in manifest order, ``eval_subset`` as input, each cropped
    around its first text: a fixed evaluation batch."""
    return fixed_batch(corpus, n, hr_crop, GlyphStream(corpus, hr_crop=hr_crop, eval_subset=eval_subset, train=False))
