"""Makes one training sample from its index: the whole FTSR recipe for a single key.

``SampleFactory.make(i)`` is a pure function of (recipe, i): its randomness is an
``np.random.Generator`` seeded by (recipe seed, i, attempt), and every cache it keeps holds
verdicts that depend on the cached item alone. So the same recipe gives byte-identical samples on
any number of workers, in any order, and a resumed build regenerates exactly what was lost.

What ends an attempt decides what is counted: ``Rejected`` (an unsuitable input) and a
``TextsrError`` raised while reading one input (a malformed label or annotation, a missing font) are
counted with their reason and the next attempt is drawn. A configuration error (missing weights, an
unknown name, a bad recipe value) is the same for every sample and is raised. Any other exception is
a bug: it is counted as ``error/<Type>``, its traceback is kept in ``SampleResult.errors`` (text, so
it crosses Ray intact) and the sample is not retried — retrying would hide the bug as a rejection.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import re
import traceback
from collections import Counter
from dataclasses import asdict, dataclass, field, fields

import cv2
import numpy as np

from models.cache import LRU
from models.errors import TextsrError
from models.registry import UnknownNameError
from models.weights import WeightsMissingError
from synth.imageio import decode_image, encode_png
from synth.recipe import CaptionConfig, Recipe, RecipeError
from synth.stages.paste import composite
from synth.types import Rejected, TextPatch

BACKGROUND_DRAWS = 50  # background images drawn per attempt before the attempt is given up
CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


def sample_key(recipe: Recipe, index: int) -> str:
    return f"{recipe.name}-{index:09d}"  # no dots: webdataset splits keys at dots


@dataclass
class SampleResult:
    key: str
    index: int
    members: dict[str, bytes] | None          # None when every attempt was rejected, or on a bug
    counts: Counter = field(default_factory=Counter)   # "stage/reason" -> n, plus "kept"
    examples: dict[str, str] = field(default_factory=dict)  # "stage/reason" -> one detail line
    errors: list[str] = field(default_factory=list)    # traceback text of an unexpected exception (a bug)


class SampleFactory:
    """Holds the set-up stages of one worker. ``setup()`` loads models once; ``make(i)`` builds."""

    def __init__(self, recipe: Recipe, catalog=None, num_threads: int | None = None,
                 harvested: dict[str, str] | None = None):
        self.recipe = recipe
        # ``harvest: true`` crop source name -> its harvest folder (local path or URL) in the build's
        # output, written by the driver before any shard (pipelines.harvest)
        self.harvested = dict(harvested or {})
        self.recipe_hash = recipe.hash()
        self.catalog = catalog
        self.num_threads = num_threads
        self._ready = False
        self._crop_cache = LRU(4096)  # crop item -> prepared patch or its Rejected

    # -- set-up ------------------------------------------------------------------------------
    def setup(self) -> "SampleFactory":
        if self._ready:
            return self
        from models.ocr import create_ocr
        from synth.sources.images import open_source
        from synth.sources.rendered import RenderConfig, TextRenderer
        from synth.stages.background import BackgroundStage
        from synth.stages.degrade import DegradeStage
        from synth.stages.ocr_filter import OCRFilterStage
        from synth.stages.paste import PasteStage
        from synth.stages.segment import SegmentStage
        from synth.stages.upscale import UpscaleStage

        r = self.recipe
        if self.num_threads:
            cv2.setNumThreads(self.num_threads)
        self.degrade = DegradeStage(r.degrade)
        if r.backgrounds.hr_size % r.degrade.scale:
            raise RecipeError(f"backgrounds.hr_size {r.backgrounds.hr_size} is not divisible by degrade.scale {r.degrade.scale}")
        self.ocr = create_ocr(r.ocr_engine, num_threads=self.num_threads)
        bg_sources = [(s.weight, open_source(s, catalog=self.catalog, want_labels=False)) for s in r.backgrounds.sources]
        verdicts = None
        if r.backgrounds.verdicts:  # `synth prefilter` output: no background is OCR'd here
            from synth.prefilter import read_verdicts

            verdicts = read_verdicts(r.backgrounds.verdicts)
        self.background = BackgroundStage(r.backgrounds, bg_sources, ocr=self.ocr, verdicts=verdicts)
        self.background.setup()
        rc = r.text.rendered
        known = {f.name for f in fields(RenderConfig)}
        self.renderer = TextRenderer(RenderConfig(**{k: v for k, v in asdict(rc).items() if k in known}))
        self.renderer.setup()
        self.crop_sources = []
        if r.text.rendered_prob < 1.0 and r.text.crops.sources:
            self.crop_sources = [(s.weight, self._crop_source(s)) for s in r.text.crops.sources]
            for _, s in self.crop_sources:
                len(s)
            self.segment = SegmentStage(make_segmenter(r.segmenter, self.ocr),
                                        min_mask_fraction=r.text.crops.min_mask_fraction)
            self.ocr_filter = OCRFilterStage(r.text.crops, self.ocr)
            self.upscale = UpscaleStage(r.upscale)
        self.paste = PasteStage(r.text, r.backgrounds.hr_size)
        self.glyph = None
        if r.glyph is not None:
            from synth.stages.glyph import GlyphStage

            captioner, note = _captioner(r.glyph.caption)
            self.glyph = GlyphStage(r.glyph, self.degrade, self.renderer, self.ocr,
                                    [s for _, s in bg_sources], captioner=captioner, caption_note=note)
        self._ready = True
        return self

    def _crop_source(self, spec):
        from synth.sources.images import open_source

        if not spec.harvest:
            return open_source(spec, catalog=self.catalog, ocr=self.ocr, want_labels=True)
        from synth.harvest import spec_key
        from synth.sources.harvested import HarvestedCrops

        key = spec_key(spec)
        if key not in self.harvested:
            raise RecipeError(f"crop source {key!r} has harvest: true but was not harvested: its crops are "
                              "made by `synth build` (pipelines.harvest) before the shards, or pass "
                              "SampleFactory(harvested={name: folder})")
        return HarvestedCrops(self.harvested[key])

    # -- text patches ------------------------------------------------------------------------
    def _real_crop(self, rng: np.random.Generator) -> TextPatch:
        w = np.array([w for w, _ in self.crop_sources], np.float64)
        src = self.crop_sources[int(rng.choice(len(w), p=w / w.sum()))][1]
        i = int(rng.integers(len(src)))
        item = src.item_id(i)
        cached = self._crop_cache.get(item)
        if cached is None:
            try:
                label = src.label(i)
                crop = decode_image(src.load(i), stage="crop-source", what=item, allow_gray=True)
                self.ocr_filter.check_label(crop, label, item)
                # a source with ground-truth glyph masks (TextSeg) needs no segmentation
                gt_mask = src.mask(i) if hasattr(src, "mask") else None
                if gt_mask is not None and gt_mask.shape != crop.shape[:2]:
                    raise Rejected("crop-source", "mask-size", f"{item}: mask {gt_mask.shape} vs crop {crop.shape[:2]}")
                mask = self.segment.process(crop, item) if gt_mask is None else gt_mask
                # a harvested crop passed this very filter when it was harvested (same engine, same crop)
                ocr_info = src.checks(i) if hasattr(src, "checks") else self.ocr_filter.process(crop, mask, label, item)
                crop, mask, factor = self.upscale.process(crop, mask)
                origin = {"origin": src.info(i)} if hasattr(src, "info") else {}  # harvested: photo + quad
                cached = (crop, mask, label, {**ocr_info, "upscale": factor, **origin})
            except Rejected as r:
                cached = r
            self._crop_cache[item] = cached
        if isinstance(cached, Rejected):
            raise cached
        crop, mask, label, info = cached
        alpha = cv2.GaussianBlur(mask.astype(np.float32) / 255.0, (3, 3), 0.6)
        h, w = crop.shape[:2]
        quad = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)
        return TextPatch(rgb=crop, alpha=alpha, mask=mask, quad=quad, text=label,
                         language="zh" if CJK.search(label) else "en",
                         source={"kind": "crop", "id": item, **info})

    def _patches(self, rng, counts: Counter, examples: dict) -> list[TextPatch]:
        lo, hi = self.recipe.text.instances
        out = []
        for _ in range(int(rng.integers(lo, hi + 1))):
            patch = None
            if self.crop_sources and rng.random() >= self.recipe.text.rendered_prob:
                for _try in range(10):
                    try:
                        patch = self._real_crop(rng)
                        break
                    except Rejected as r:
                        _count(counts, examples, r)
                else:
                    counts["crop/exhausted-fell-back-to-rendered"] += 1
            out.append(patch or self.renderer.sample(rng))
        return out

    def _background(self, rng, counts: Counter, examples: dict):
        """Draw backgrounds until one is usable (rejections counted, not fatal to the attempt). The
        draws depend only on ``rng`` and on verdicts that are functions of each image alone, so
        every worker makes the same ones."""
        for _ in range(BACKGROUND_DRAWS):
            try:
                return self.background.sample(rng)
            except Rejected as r:
                _count(counts, examples, r)
        raise Rejected("background", "no-usable-image", f"{BACKGROUND_DRAWS} draws in a row were rejected")

    # -- one sample --------------------------------------------------------------------------
    def _attempt(self, key: str, index: int, attempt: int, counts: Counter, examples: dict) -> dict[str, bytes]:
        r = self.recipe
        rng = np.random.default_rng([r.seed, index, attempt])
        bg, bg_info = self._background(rng, counts, examples)
        patches = self._patches(rng, counts, examples)
        placed, instances, skipped = self.paste.place(patches, rng)
        hr, mask = composite(bg, placed)
        if skipped:
            counts["paste/patch-did-not-fit"] += skipped
        deg_rng = copy.deepcopy(rng) if self.glyph else None  # the LR's draw, for the distorted scene
        lr, deg = self.degrade.process(hr, rng)
        extra: dict[str, bytes] = {}
        glyph_meta = None
        if self.glyph:
            extra, glyph_meta = self.glyph.process(bg=bg, hr=hr, lr=lr, placed=placed, instances=instances,
                                                   bg_info=bg_info, rng=rng, deg_rng=deg_rng)
        meta = {
            "key": key, "index": index, "attempt": attempt, "recipe": r.name,
            "recipe_hash": self.recipe_hash, "seed": r.seed, "scale": r.degrade.scale,
            "hr_size": list(hr.shape[:2]), "background": bg_info, "texts": instances,
            "degradation": deg,
        }
        if glyph_meta is not None:
            meta["glyph"] = glyph_meta
        return {"hr.png": encode_png(hr), "lr.png": encode_png(lr), "mask.png": encode_png(mask), **extra,
                "json": json.dumps(meta, ensure_ascii=False, sort_keys=True).encode("utf-8")}

    def make(self, index: int) -> SampleResult:
        self.setup()
        key = sample_key(self.recipe, index)
        res = SampleResult(key=key, index=index, members=None)
        for attempt in range(self.recipe.max_attempts):
            try:
                res.members = self._attempt(key, index, attempt, res.counts, res.examples)
                res.counts["kept"] += 1
                return res
            except Rejected as r:
                _count(res.counts, res.examples, r)
            except _CONFIG_ERRORS:
                raise  # the same for every sample: the build stops with the one-line message
            except TextsrError as e:  # one bad input file (label, annotation, font): counted, next attempt
                _count(res.counts, res.examples, Rejected("input", type(e).__name__, f"{key}: {e}"))
            except Exception as e:  # noqa: BLE001 — a bug: recorded whole, never retried as a rejection
                _count(res.counts, res.examples, Rejected("error", type(e).__name__, f"{key}: {e}"))
                res.errors.append(f"sample {key}, attempt {attempt}:\n{traceback.format_exc()}")
                return res
        res.counts["sample/failed-all-attempts"] += 1
        return res


# TextsrErrors that do not depend on the sample: retrying them would turn a configuration mistake
# into a corpus silently built without the part that needs it (e.g. crops without their upscaler)
_CONFIG_ERRORS = (WeightsMissingError, UnknownNameError, RecipeError)


def make_segmenter(name: str, ocr):
    """The recipe's segmenter. The PP-OCR-based one shares this worker's OCR engine; model-based
    ones (hi-sam, sam-ts) take no engine and would fail with a TypeError if handed one."""
    import inspect

    from models.seg import SEGMENTERS, create_segmenter

    accepts = inspect.signature(SEGMENTERS.get(name)).parameters
    return create_segmenter(name, engine=ocr) if "engine" in accepts else create_segmenter(name)


def _captioner(cfg: CaptionConfig):
    """The recipe's captioning model, or (None, why) when its weights are missing and the recipe
    allows the metadata fallback."""
    from models.caption import create_captioner
    from models.weights import WeightsMissingError

    try:
        return create_captioner(cfg.model, weights=cfg.weights or None), ""
    except WeightsMissingError as e:
        if cfg.fallback != "metadata":
            raise
        return None, f"{cfg.model}: weights not found ({str(e).splitlines()[0]})"


def _count(counts: Counter, examples: dict, r: Rejected) -> None:
    k = f"{r.stage}/{r.reason}"
    counts[k] += 1
    examples.setdefault(k, r.detail)


def check_recipe(recipe: Recipe, catalog=None) -> None:
    """Cheap checks in the driver, before any worker starts, so a typo is a one-line error
    rather than a failed actor: registry names, preset and overrides, source roots, sizes."""
    from models.ocr import OCR_ENGINES
    from models.seg import SEGMENTERS
    from models.sr import SR_MODELS
    from synth.sources.images import ImageFolder, open_source
    from synth.stages.degrade import DegradeStage

    OCR_ENGINES.target(recipe.ocr_engine)
    SR_MODELS.target(recipe.upscale.model)
    DegradeStage(recipe.degrade)
    if recipe.backgrounds.hr_size % recipe.degrade.scale:
        raise RecipeError(f"backgrounds.hr_size {recipe.backgrounds.hr_size} is not divisible by "
                         f"degrade.scale {recipe.degrade.scale}")
    lo, hi = recipe.text.instances
    if not 1 <= lo <= hi:
        raise RecipeError(f"text.instances must be [min, max] with 1 <= min <= max, got {[lo, hi]}")
    bg_sources = [open_source(s, catalog=catalog, want_labels=False) for s in recipe.backgrounds.sources]
    for s in bg_sources:
        len(s)
    if recipe.backgrounds.verdicts:
        from models.ocr import create_ocr
        from synth.prefilter import read_verdicts

        # the engine's constructor loads no model; its identity hashes the model files once
        read_verdicts(recipe.backgrounds.verdicts).check(recipe.backgrounds, bg_sources,
                                                         create_ocr(recipe.ocr_engine).identity())
    if recipe.glyph is not None:
        from models.caption import CAPTIONERS

        CAPTIONERS.target(recipe.glyph.caption.model)
        if recipe.glyph.caption.fallback not in ("metadata", "error"):
            raise RecipeError(f"glyph.caption.fallback must be 'metadata' or 'error', got {recipe.glyph.caption.fallback!r}")
        for s in recipe.glyph.extra_scales:
            if s not in (2, 4, 8) or recipe.backgrounds.hr_size % s:
                raise RecipeError(f"glyph.extra_scales: {s} must be 2, 4 or 8 and divide backgrounds.hr_size "
                                 f"{recipe.backgrounds.hr_size}")
    for s in recipe.backgrounds.sources:
        if s.harvest:
            raise RecipeError(f"backgrounds.sources: {s.name or s.path!r} has harvest: true, which is for "
                             "text.crops.sources (photos to cut text crops from)")
    if recipe.text.rendered_prob < 1.0:
        SEGMENTERS.target(recipe.segmenter)
        check_harvest_settings(recipe)
        for s in recipe.text.crops.sources:
            if s.harvest:  # the photos to harvest: an image folder (its crops do not exist yet)
                src = open_source(dataclasses.replace(s, harvest=False), catalog=catalog, want_labels=False)
                if not isinstance(src, ImageFolder):
                    raise RecipeError(f"text.crops.sources: {s.name or s.path!r} has harvest: true but is not an "
                                     "image-folder of photos (labelled crops need no harvest: drop it)")
                len(src)
            elif s.name != "skimage-page-lines":
                len(open_source(s, catalog=catalog, want_labels=True))


def check_harvest_settings(recipe: Recipe) -> None:
    """``text.crops.harvest`` values out of range, and harvest sources that share a name."""
    from synth.harvest import slug, spec_key

    h = recipe.text.crops.harvest
    for k, ok in (("min_score", 0.0 <= h.min_score <= 1.0), ("min_height", h.min_height >= 1),
                  ("margin", h.margin >= 0), ("max_lines_per_image", h.max_lines_per_image >= 1),
                  ("upright_deg", 0.0 <= h.upright_deg <= 45.0)):
        if not ok:
            raise RecipeError(f"text.crops.harvest.{k} = {getattr(h, k)!r} is out of range "
                             "(min_score in [0, 1], min_height >= 1, margin >= 0, max_lines_per_image >= 1, "
                             "upright_deg in [0, 45])")
    keys = [spec_key(s) for s in recipe.text.crops.sources if s.harvest]
    slugs = [slug(k) for k in keys]
    if len(set(slugs)) != len(slugs):
        raise RecipeError(f"text.crops.sources: harvest sources {keys} need distinct names (give each a name:)")
