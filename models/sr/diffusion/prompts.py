"""Where a diffusion SR model's text prompt comes from: a fixed string, nothing, or a tagger.

A prompt source is called with the batch the VAE encodes — N×3×H×W float in [0, 1], the LR
image bicubic-upscaled to the output size — and returns N strings.

- ``FixedPrompt(text)``: the same text for every image (``""`` = the empty prompt PiSA-SR uses).
- ``DapeTagger``: OSEDiff's DAPE (Wu et al., SeeSR, CVPR 2024): RAM Swin-L (Zhang et al.,
  "Recognize Anything") with a LoRA fine-tuned on degraded images, or plain RAM. As ``test_osediff.py``:
  the image is resized to 384×384, ImageNet-normalised, tagged, and the prompt is
  ``f"{tags}, {user_prompt},"``. The network is our port (``models.sr.diffusion.ram``); its weights,
  tag list and thresholds come through the resolver (``ram_swin_large_14m.pth``, ``DAPE.pth``,
  ``ram_tag_list.txt``, ``ram_tag_list_threshold.txt``) with the usual WeightsMissingError when absent.
"""
from __future__ import annotations

from models.sr.diffusion.ram import DAPE, RAM_SWIN_L, RAM_TAG_LIST, RAM_TAG_THRESHOLDS, TAGGER_FILES  # noqa: F401

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
    OSEDiff does (``"{tags}, {suffix},"``). ``dape=False`` runs plain RAM (no DAPE LoRA).
    ``tagger_kw``: ram_weights, dape_weights, tag_list, tag_thresholds, config, antialias
    (see ``models.sr.diffusion.ram.RAMTagger``)."""

    kind = "dape"

    def __init__(self, *, suffix: str = "", dape: bool = True, allow_download: bool | None = None, device=None,
                 dtype=None, **tagger_kw):
        from models.sr.diffusion.ram import RAMTagger

        self.suffix = suffix
        self.kind = "dape" if dape else "ram"
        self.tagger = RAMTagger(dape=dape, allow_download=allow_download, device=device, dtype=dtype, **tagger_kw)

    def __call__(self, images) -> list[str]:
        return [f"{t}, {self.suffix}," for t in self.tagger.tags(images)]

    def describe(self) -> str:
        return f"{self.kind} tags + {self.suffix!r}"


def make_prompt_source(prompt, *, default: str = "none", suffix: str = "", allow_download=None,
                       device=None, dtype=None, **tagger_kw) -> PromptSource:
    """A prompt source from a user option: a PromptSource (as is), ``None`` (``default``),
    ``"none"``/``""`` (empty prompt), ``"dape"``/``"ram"`` (tagger; ``tagger_kw`` = ram_weights,
    dape_weights, tag_list, tag_thresholds), or any other string (that fixed prompt)."""
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


def device_and_prompt(name: str, device, dtype, prompt, *, default: str, suffix: str = "",
                      allow_download=None, **tagger_kw):
    """What every diffusion method's ``build`` resolves the same way: the torch device (CUDA when
    available) and its prompt source (the tagger runs on that device, in the method's dtype;
    fp16 on CPU is refused here, before anything loads)."""
    import torch

    from models.sr.diffusion.base import resolve_dtype

    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    src = make_prompt_source(prompt, default=default, suffix=suffix, allow_download=allow_download, device=dev,
                             dtype=resolve_dtype(dev, dtype, name), **tagger_kw)
    return dev, src
