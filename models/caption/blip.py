"""BLIP image captioning (Li et al., "BLIP: Bootstrapping Language-Image Pre-training", ICML 2022;
github.com/salesforce/BLIP, BSD-3-Clause), through ``transformers``' BlipForConditionalGeneration.

The model folder (``config.json``, weights, tokenizer and preprocessor files, as on the Hub) is
found by the weights resolver: explicit path → $TEXTSR_WEIGHTS/<folder> → Hugging Face cache →
download only when allowed.
"""
from __future__ import annotations

import numpy as np

from models.weights import WeightsFolder, resolve_folder

FOLDERS = {
    "blip-base": WeightsFolder(name="blip-image-captioning-base", hf_repo="Salesforce/blip-image-captioning-base",
                               required=("config.json", "preprocessor_config.json")),
    "blip-large": WeightsFolder(name="blip-image-captioning-large", hf_repo="Salesforce/blip-image-captioning-large",
                                required=("config.json", "preprocessor_config.json")),
}


class BlipCaptioner:
    """``caption(img)``: HxWx3 uint8 RGB -> one English sentence (greedy decoding, deterministic)."""

    def __init__(self, name: str, folder, device=None, max_new_tokens: int = 30):
        import torch
        from transformers import BlipForConditionalGeneration, BlipProcessor

        self.name = name
        self.folder = str(folder)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.processor = BlipProcessor.from_pretrained(self.folder)
        self.model = BlipForConditionalGeneration.from_pretrained(self.folder).eval().to(self.device)
        self.max_new_tokens = max_new_tokens

    def caption(self, img: np.ndarray) -> str:
        import torch

        if not (isinstance(img, np.ndarray) and img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8):
            raise ValueError(f"{self.name}.caption expects an HxWx3 uint8 RGB array, got "
                             f"{getattr(img, 'shape', type(img).__name__)} {getattr(img, 'dtype', '')}")
        inputs = self.processor(images=img, return_tensors="pt").to(self.device)
        with torch.inference_mode():
            ids = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False, num_beams=1)
        return self.processor.decode(ids[0], skip_special_tokens=True).strip()


def build(name: str, *, weights=None, device=None, allow_download: bool | None = None, **options):
    folder = resolve_folder(FOLDERS[name], explicit=weights, allow_download=allow_download)
    return BlipCaptioner(name, folder, device=device, **options)
