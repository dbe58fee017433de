"""The SR model registry (lazy: listing imports nothing heavy).

Every target is a ``build(name, *, tiny=False, **options)`` function of its family module. Each
registered model also has a ``<name>-tiny`` entry: the same architecture with a small random
configuration, for CPU tests and CLI dry runs.
"""
from __future__ import annotations

from models.registry import Registry

_FAMILIES = {
    "models.sr.classical:build": ("bicubic", "lanczos", "nearest"),
    "models.sr.realesrgan:build": ("realesrgan-x4plus", "realesrnet-x4plus", "realesrgan-x2plus",
                                   "realesrgan-x4plus-anime-6b", "realesr-general-x4v3",
                                   "realesr-animevideov3"),
    "models.sr.swinir:build": ("swinir-real-x4",),
    "models.sr.hat:build": ("hat-real-x4",),
    "models.sr.osediff:build": ("osediff",),
    "models.sr.pisasr:build": ("pisa-sr",),
    "models.sr.codsr:build": ("codsr",),
    "models.sr.seesr:build": ("seesr", "seesr-srsr"),
    "models.sr.tadisr:build": ("tadisr-kolors", "tadisr-cogview4"),
    "models.sr.glyphsr:build": ("glyph-sr",),
    "models.sr.vosr:build": ("vosr-0.5b", "vosr-1.4b", "vosr-0.5b-onestep", "vosr-1.4b-onestep"),
}

SR_MODELS = Registry("SR model")
for _target, _names in _FAMILIES.items():
    for _n in _names:
        SR_MODELS.register(_n, _target)
        SR_MODELS.register(f"{_n}-tiny", _target)


def create_sr(name: str, weights=None, device=None, dtype=None, **options):
    """Build SR model ``name`` (see ``list_sr()``). ``weights``: an explicit checkpoint path;
    otherwise the weights resolver finds the official file. ``device``/``dtype``: where it runs
    (default CUDA+fp16 when available, else CPU+fp32). Other options go to the family builder
    (``tile``, ``tile_overlap``, ``scale``, ``allow_download``)."""
    fn = SR_MODELS.get(name)
    base, tiny = (name[:-5], True) if name.endswith("-tiny") else (name, False)
    return fn(base, tiny=tiny, weights=weights, device=device, dtype=dtype, **options)


def list_sr(pattern: str | None = None) -> list[str]:
    return SR_MODELS.names(pattern)
