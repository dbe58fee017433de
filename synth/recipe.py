"""Recipes: YAML files loaded into frozen dataclasses by one strict loader.

Unknown keys are errors (BasicSR's raw dicts silently ignore typos); ``--set a.b=c`` overrides are
parsed as YAML scalars and type-checked against the dataclass field they land in. The resolved
recipe is written into every build's manifest, and its hash into every sample.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from models.errors import TextsrError

RECIPES_DIR = Path(__file__).parent / "recipes"


class RecipeError(TextsrError, ValueError):
    """A recipe file or override that does not fit the schema; the message names key and problem."""


@dataclass(frozen=True)
class SourceSpec:
    """One image source. ``name`` is a datasets.yaml entry or a built-in embedded source
    (``skimage-photos``, ``skimage-page-lines``); ``path`` + ``format`` name an ad-hoc folder/LMDB.
    ``weight`` is the relative probability of drawing from this source."""

    name: str = ""
    path: str = ""
    format: str = ""          # image-folder | ctr-lmdb | folder-labels (when path is given)
    labels: str = ""          # folder-labels: the labels file (default <path>/labels.txt)
    weight: float = 1.0
    harvest: bool = False     # text crops only: an image-folder whose text lines are detected, cut,
                              # segmented and OCR-checked once per build (text.crops.harvest settings)


@dataclass(frozen=True)
class BackgroundConfig:
    sources: tuple[SourceSpec, ...] = (SourceSpec(name="skimage-photos"),)
    hr_size: int = 512                 # square HR crop side, px
    scale_range: tuple[float, float] = (0.5, 1.0)   # random downscale of large images before cropping
    ocr_reject: bool = True            # reject backgrounds in which OCR finds any text
    ocr_min_score: float = 0.5         # detections below this recognition score don't count as text
    max_side_for_ocr: int = 1024       # OCR runs on the source image resized to at most this side
    min_side_for_ocr: int = 1024       # … and smaller images enlarged to this long side (at most 2×), so
                                       # small text — name tags, badges — is found (PP-OCR misses ~8 px glyphs)
    flip: bool = True
    verdicts: str = ""                 # a `synth prefilter` verdicts file (.jsonl or .parquet): size and
                                       # OCR readings of every background, so no build OCRs one; "" = none


@dataclass(frozen=True)
class RenderedTextConfig:
    languages: dict = field(default_factory=lambda: {"en": 0.7, "zh": 0.3})
    vocab_size: int = 20000
    words: tuple[int, int] = (1, 3)
    font_size_px: tuple[int, int] = (24, 96)
    outline_prob: float = 0.3
    rotation_deg: tuple[float, float] = (-15.0, 15.0)
    curvature: tuple[float, float] = (0.0, 0.25)
    digit_prob: float = 0.15
    punct_prob: float = 0.1


@dataclass(frozen=True)
class HarvestConfig:
    """How text crops are harvested from the photos of a ``harvest: true`` crop source (see
    synth/harvest.py): OCR lines that pass these checks are cut (rectified when tilted), segmented
    and kept when the crop OCR filter agrees; the OCR reading is the crop's label."""

    min_score: float = 0.9             # OCR recognition score a line needs before it is cut
    min_height: int = 12               # px: lines lower than this (the quad's height) are skipped
    margin: int = 3                    # px kept around the line on every side
    max_lines_per_image: int = 50      # lines beyond this (reading order) are skipped, not cut
    upright_deg: float = 2.0           # lines tilted less than this are cut as plain axis-aligned
                                       # boxes; more: perspective-warped from their 4-point quad
    split_words: bool = True           # cut dark-on-light lines into words where the gaps are clear


@dataclass(frozen=True)
class CropTextConfig:
    sources: tuple[SourceSpec, ...] = (SourceSpec(name="skimage-page-lines"),)
    min_chars: int = 1
    max_chars: int = 40
    min_edge_per_char: float = 8.0     # long edge (px) / #chars below this: too small to learn from
    ocr_min_similarity: float = 0.8    # OCR(crop) and OCR(masked glyphs) vs label
    min_mask_fraction: float = 0.02    # segmentation that finds (almost) no glyph pixels is rejected
    harvest: HarvestConfig = HarvestConfig()   # for crop sources with ``harvest: true``


@dataclass(frozen=True)
class TextConfig:
    instances: tuple[int, int] = (1, 5)         # text patches per sample, inclusive
    rendered_prob: float = 0.7                  # else a real crop (when crop sources exist)
    rendered: RenderedTextConfig = RenderedTextConfig()
    crops: CropTextConfig = CropTextConfig()
    max_fraction: float = 0.8                   # a patch's long side at most this fraction of hr_size
    place_tries: int = 50                       # random placements tried before giving up on a patch


@dataclass(frozen=True)
class UpscaleConfig:
    model: str = "bicubic"          # a registered SR model name (models.sr)
    min_height: int = 32            # crops whose text height is below this are upscaled to it


@dataclass(frozen=True)
class DegradeSpec:
    preset: str = "realesrgan"
    scale: int = 4
    overrides: dict = field(default_factory=dict)   # DegradeConfig fields to change


@dataclass(frozen=True)
class TextDistortConfig:
    """How the text-distorted variants (GLYPH-SR's P⁻) corrupt each text instance. Every instance
    gets at least one operation; all of them act on the patch before it is composited, and the
    result is kept only within ``reach_px`` of the instance's clean glyph mask."""

    substitute_prob: float = 0.6        # swap characters for visually confusable ones (rendered text)
    max_substitutions: int = 2
    morph_prob: float = 0.4             # stroke erosion or dilation (half each)
    morph_px: tuple[int, int] = (1, 2)  # structuring-element radius, px
    blur_prob: float = 0.3              # local Gaussian blur of the text
    blur_sigma: tuple[float, float] = (1.0, 2.5)
    warp_prob: float = 0.3              # smooth random displacement of the glyphs
    warp_px: tuple[float, float] = (1.0, 3.0)
    reach_px: int = 8                   # distortion never changes pixels farther than this from glyphs


@dataclass(frozen=True)
class CaptionConfig:
    model: str = "blip-base"            # a models.caption captioner; its weights go through the resolver
    weights: str = ""                   # an explicit model folder (else: $TEXTSR_WEIGHTS, HF cache, …)
    fallback: str = "metadata"          # "metadata": a caption from the background source's metadata;
                                        # "error": stop when the model's weights are missing


@dataclass(frozen=True)
class GlyphConfig:
    """The GLYPH-SR corpus additions to a sample (see recipes/glyph.yaml)."""

    extra_scales: tuple[int, ...] = (8,)          # LR members beyond degrade.scale: lr_x8.png
    distort: TextDistortConfig = TextDistortConfig()
    ocr_min_score: float = 0.5                    # LR OCR lines below this recognition score are dropped
    caption: CaptionConfig = CaptionConfig()


@dataclass(frozen=True)
class Recipe:
    name: str = "ftsr"
    seed: int = 0
    samples_per_shard: int = 256
    max_attempts: int = 20              # tries per sample key before the key is recorded as failed
    ocr_engine: str = "rapidocr-ppocrv4"
    segmenter: str = "ppocr-db-glyph"
    backgrounds: BackgroundConfig = BackgroundConfig()
    text: TextConfig = TextConfig()
    upscale: UpscaleConfig = UpscaleConfig()
    degrade: DegradeSpec = DegradeSpec()
    glyph: GlyphConfig | None = None    # set: the GLYPH-SR corpus (four variants, text guidance)

    def to_dict(self) -> dict:
        d = _to_jsonable(dataclasses.asdict(self))
        if d.get("glyph") is None:
            d.pop("glyph", None)  # recipes without it keep the hash they had before it existed
        # likewise the harvest keys: absent unless a crop source harvests (the settings change nothing else)
        for sources in (d["backgrounds"]["sources"], d["text"]["crops"]["sources"]):
            for s in sources:
                if not s.get("harvest"):
                    s.pop("harvest", None)
        if not any(s.get("harvest") for s in d["text"]["crops"]["sources"]):
            d["text"]["crops"].pop("harvest", None)
        return d

    def hash(self) -> str:
        d = self.to_dict()
        # backgrounds.verdicts is a precomputed cache of what the build would compute itself, checked
        # against the sources, the OCR settings and the engine before use: it never changes a sample,
        # so a build with it has the hash (and the bytes) of the same build without it
        d["backgrounds"].pop("verdicts", None)
        blob = json.dumps(d, sort_keys=True, ensure_ascii=False).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def _to_jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _to_jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_to_jsonable(v) for v in x]
    return x


def _coerce(tp: Any, value: Any, where: str) -> Any:
    """Check ``value`` against annotation ``tp`` and convert lists to tuples / dicts to dataclasses."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise RecipeError(f"{where}: expected a mapping, got {value!r}")
        return from_dict(tp, value, where)
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise RecipeError(f"{where}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise RecipeError(f"{where}: expected {len(args)} values, got {len(value)} ({value!r})")
        return tuple(_coerce(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if origin in (types.UnionType, typing.Union):
        for a in typing.get_args(tp):
            try:
                return _coerce(a, value, where)
            except RecipeError:
                pass
        raise RecipeError(f"{where}: {value!r} fits none of {tp}")
    if tp is dict:
        if not isinstance(value, dict):
            raise RecipeError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RecipeError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise RecipeError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise RecipeError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise RecipeError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def from_dict(cls: type, data: dict, where: str = "recipe") -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        import difflib

        hints_txt = []
        for k in unknown:
            close = difflib.get_close_matches(k, names, n=1)
            hints_txt.append(f"{k!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise RecipeError(f"{where}: unknown key {', '.join(hints_txt)}; known: {', '.join(sorted(names))}")
    kwargs = {k: _coerce(hints[k], v, f"{where}.{k}") for k, v in data.items()}
    return cls(**kwargs)


def parse_set(items: list[str]) -> dict:
    """``["a.b=3", "c=[1,2]"]`` -> nested dict; values parsed as YAML."""
    out: dict = {}
    for item in items:
        if "=" not in item:
            raise RecipeError(f"--set {item!r}: expected KEY=VALUE, e.g. degrade.scale=8")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError as e:
            raise RecipeError(f"--set {item!r}: value is not valid YAML ({e.problem})") from None
        node = out
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return out


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and k not in ("overrides", "languages"):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def list_recipes() -> list[str]:
    return sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))


def load_recipe(name_or_path: str, overrides: list[str] | None = None) -> Recipe:
    """Load a built-in recipe by name (``ftsr``) or a YAML file by path, then apply ``--set``s."""
    path = Path(name_or_path)
    if not path.suffix:
        path = RECIPES_DIR / f"{name_or_path}.yaml"
        if not path.is_file():
            import difflib

            close = difflib.get_close_matches(name_or_path, list_recipes(), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise RecipeError(f"unknown recipe {name_or_path!r}{hint} (known: {', '.join(list_recipes())})")
    if not path.is_file():
        raise RecipeError(f"recipe file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise RecipeError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: expected a mapping at the top level")
    if overrides:
        data = _merge(data, parse_set(overrides))
    return from_dict(Recipe, data, where=path.stem)
