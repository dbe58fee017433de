"""The shared core of the one-step Stable-Diffusion SR methods (OSEDiff, PiSA-SR, CODSR) and the
pieces SeeSR reuses: SD component loading and the tiny random SD (``components``), latent and
VAE tiling (``tiling``), colour fix (``colorfix``), peft LoRA with strict official-layout loading
(``lora``), prompt sources (``prompts``; the RAM/DAPE tagger in ``ram``) and the ``DiffusionSR``
procedure (``base``).

Names only: importing this package imports neither torch nor diffusers.
"""
from models.sr.diffusion.base import DiffusionSR, StepContext, resolve_dtype
from models.sr.diffusion.colorfix import COLOR_FIXES, adain, color_fix, wavelet
from models.sr.diffusion.components import (SD21_BASE, SDComponents, base_components, find_base,
                                            load_components, sd21_base_configs, tiny_components,
                                            tiny_configs, write_tiny_base)
from models.sr.diffusion.prompts import DapeTagger, FixedPrompt, PromptSource, make_prompt_source
from models.sr.diffusion.tiling import gaussian_weights, tiled_latent, tiled_resample, vae_decode, vae_encode

__all__ = ["COLOR_FIXES", "SD21_BASE", "DapeTagger", "DiffusionSR", "FixedPrompt", "PromptSource",
           "SDComponents", "StepContext", "adain", "base_components", "color_fix", "find_base",
           "gaussian_weights", "load_components", "make_prompt_source", "resolve_dtype",
           "sd21_base_configs", "tiled_latent", "tiled_resample", "tiny_components", "tiny_configs",
           "vae_decode", "vae_encode", "wavelet", "write_tiny_base"]
