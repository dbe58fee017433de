"""Where a diffusion SR model's text prompt comes from: a fixed string, nothing, or a tagger.

A prompt source is called with the batch the VAE encodes — N×3×H×W float in [0, 1], the LR
image bicubic-upscaled to the output size — and returns N strings.

- ``FixedPrompt(text)``: the same text for every image (``""`` = the empty prompt PiSA-SR uses).
- ``DapeTagger``: OSEDiff's DAPE (Wu et al., SeeSR, CVPR 2024): RAM Swin-L (Zhang et al.,
  "Recognize Anything") with a LoRA fine-tuned on degraded images. As ``test_osediff.py``: the
  image is resized to 384×384, ImageNet-normalised, tagged, and the prompt is
  ``f"{tags}, {user_prompt},"``. The RAM/DAPE network itself is not ported here: it runs through
  the official ``ram`` package shipped inside the OSEDiff/SeeSR repos (put its folder on
  ``PYTHONPATH`` or pass ``ram_code=PATH``); its weights come through the resolver
  (``ram_swin_large_14m.pth``, ``DAPE.pth``) with the usual WeightsMissingError when absent.
"""
from __future__ import annotations

import sys
from pathlib import Path

from models.weights import WeightsFile, resolve

RAM_SWIN_L = WeightsFile("ram_swin_large_14m.pth", hf_repo="xinyu1205/recognize_anything_model")
DAPE = WeightsFile("DAPE.pth", homepage="https://drive.google.com/file/d/1KIV6VewwO2eDC9g4Gcvgm-a0LDI7Lmwm "
                                        "(OSEDiff README)")
TAGGERS = ("dape", "ram")


class PromptSource:
    """Base: ``__call__(images N×3×H×W in [0, 1]) -> list of N prompts``; ``describe()`` for run records."""

    kind = "prompt"

    def __call__(self, images) -> list[str]:  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self) -> str:
        return self.kind


class FixedPrompt(PromptSource):
    kind = "fixed"

    def __init__(self, text: str = ""):
        self.text = str(text)

    def __call__(self, images) -> list[str]:
        return [self.text] * int(images.shape[0])

    def describe(self) -> str:
        return f"fixed: {self.text!r}"


class DapeTagger(PromptSource):
    """RAM/DAPE tags as the prompt (see module doc). ``suffix`` is the user prompt appended as
    OSEDiff does (``"{tags}, {suffix},"``). ``dape=False`` runs plain RAM (no DAPE LoRA)."""

    kind = "dape"

    def __init__(self, *, suffix: str = "", dape: bool = True, ram_weights=None, dape_weights=None,
                 ram_code=None, allow_download: bool | None = None, device=None, dtype=None):
        import torch

        self.suffix = suffix
        self.kind = "dape" if dape else "ram"
        ram_path = resolve(RAM_SWIN_L, explicit=ram_weights, allow_download=allow_download)
        dape_path = resolve(DAPE, explicit=dape_weights, allow_download=allow_download) if dape else None
        ram_fn = _import_ram(ram_code)
        self.device = torch.device(device or "cpu")
        self.dtype = dtype or torch.float32
        net = ram_fn(pretrained=str(ram_path), pretrained_condition=str(dape_path) if dape_path else "",
                     image_size=384, vit="swin_l")
        self.net = net.eval().to(self.device, self.dtype)

    def __call__(self, images) -> list[str]:
        import torch
        import torch.nn.functional as F

        x = F.interpolate(images.float(), size=(384, 384), mode="bilinear", align_corners=False, antialias=True)
        mean = torch.tensor([0.485, 0.456, 0.406], device=x.device).view(1, 3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225], device=x.device).view(1, 3, 1, 1)
        x = ((x - mean) / std).to(self.device, self.dtype)
        with torch.no_grad():
            tags, _ = self.net.generate_tag(x)
        return [f"{t}, {self.suffix}," for t in tags]

    def describe(self) -> str:
        return f"{self.kind} tags + {self.suffix!r}"


def _import_ram(ram_code=None):
    if ram_code is not None:
        sys.path.insert(0, str(Path(ram_code).expanduser()))
    try:
        from ram.models.ram_lora import (
            ram,  # the official package (OSEDiff/SeeSR repos)
        )
    except ImportError as e:
        raise ImportError(
            f"the DAPE/RAM tagger needs the official `ram` package ({e}). It ships inside the OSEDiff "
            "repo (github.com/cswry/OSEDiff, folder ram/): clone it and pass ram_code=PATH_TO_CLONE "
            "(or put the clone on PYTHONPATH). Or use another prompt source: prompt='none' (empty "
            "prompt) or prompt='<your text>'.") from None
    return ram


def make_prompt_source(prompt, *, default: str = "none", suffix: str = "", allow_download=None,
                       device=None, dtype=None, **tagger_kw) -> PromptSource:
    """A prompt source from a user option: a PromptSource (as is), ``None`` (``default``),
    ``"none"``/``""`` (empty prompt), ``"dape"``/``"ram"`` (tagger; ``tagger_kw`` = ram_weights,
    dape_weights, ram_code), or any other string (that fixed prompt)."""
    if isinstance(prompt, PromptSource):
        return prompt
    if prompt is None:
        prompt = default
    if not isinstance(prompt, str):
        raise TypeError(f"prompt must be a string or a PromptSource, got {type(prompt).__name__}")
    key = prompt.strip().lower()
    if key in ("", "none"):
        return FixedPrompt("")
    if key in TAGGERS:
        return DapeTagger(suffix=suffix, dape=key == "dape", allow_download=allow_download,
                          device=device, dtype=dtype, **tagger_kw)
    return FixedPrompt(prompt)
