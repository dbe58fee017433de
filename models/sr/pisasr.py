"""PiSA-SR (Sun et al., "Pixel-level and Semantic-level Adjustable Super-resolution: A Dual-LoRA
Approach", CVPR 2025; github.com/csslc/PiSA-SR, Apache-2.0), on SD-2.1-base.

Inference as the official ``test_pisasr.py`` + ``PiSASR_eval`` (``pisasr.py``): the LR image
bicubic ×4 in [-1, 1] is encoded by the plain SD VAE (posterior sampled) to z_L; the UNet runs at
timestep 1 with the empty prompt; the result is z_L − pred (no scheduler step); VAE decode;
AdaIN colour fix. Tiles as OSEDiff (latent 96/32, VAE 1024 px / 224 latent).

Two LoRA sets on the same UNet modules. ``PiSASR_eval`` merges the pixel LoRA into the base
weights (W_pix = W + ΔW_pix), then adds the semantic LoRA on top. With ``--default`` (or
λ_pix = λ_sem = 1) the UNet runs once with both merged. Otherwise (``--lambda_pix``,
``--lambda_sem``) it runs twice per tile: pred_pix with W_pix alone and pred_full with
W_pix + ΔW_sem, and uses λ_pix·pred_pix + λ_sem·(pred_full − pred_pix) — the "semantic"
prediction is the semantic LoRA's *increment* over the pixel one, so λ = (1, 1) is the default
model exactly, λ_sem = 0 the pixel-only model.

Checkpoint ``pisa_sr.pkl`` (``PiSASR.save_model``; Google Drive / Baidu only): ``state_dict_unet``
(every UNet parameter whose name contains "lora", both sets), ``lora_rank_unet_pix``,
``lora_rank_unet_sem`` and ``unet_lora_{encoder,decoder,others}_modules_{pix,sem}``; adapters
"default_{encoder,decoder,others}_{pix,sem}" with ``LoraConfig(r=rank, init_lora_weights=
"gaussian", target_modules=list)``.
"""
from __future__ import annotations

from models.sr.diffusion.base import DiffusionSR
from models.weights import WeightsFile

PISA_PKL = WeightsFile("pisa_sr.pkl", homepage="https://drive.google.com/drive/folders/1oLetijWNd59xwJE5oU-eXylQBifxWdss "
                                               "(PiSA-SR README)")


def needs():
    """Every file/folder the full model needs: the base and the checkpoint."""
    from models.sr.diffusion.components import SD21_BASE

    return {"pisa-sr": (SD21_BASE, PISA_PKL)}


PARTS = ("encoder", "decoder", "others")
PIX = tuple(f"default_{p}_pix" for p in PARTS)
SEM = tuple(f"default_{p}_sem" for p in PARTS)
PKL_KEYS = ("state_dict_unet", "lora_rank_unet_pix", "lora_rank_unet_sem") + tuple(
    f"unet_lora_{p}_modules_{k}" for k in ("pix", "sem") for p in PARTS)


def load_pisasr(components, path, *, merge_sem: bool) -> dict:
    """Add PiSA-SR's six adapters to ``components.unet`` (float32), load ``path`` strictly, merge
    the pixel LoRA into the base weights, and the semantic one too when ``merge_sem``; otherwise
    the semantic adapters stay active as LoRA layers (switched by ``lora.enable_lora``)."""
    from models.sr.diffusion import lora
    from models.files import sha256_file

    ck = lora.read_pkl(path, PKL_KEYS, "PiSA-SR")
    unet = components.unet
    for kind, names in (("pix", PIX), ("sem", SEM)):
        for part, adapter in zip(PARTS, names):
            mods = ck[f"unet_lora_{part}_modules_{kind}"]
            lora.check_modules(unet, mods, f"{path}: unet_lora_{part}_modules_{kind}")
            lora.add_lora(unet, mods, ck[f"lora_rank_unet_{kind}"], adapter)
    lora.load_lora_state(unet, ck["state_dict_unet"], lambda n: "lora" in n, f"{path}: state_dict_unet")
    lora.merge_lora(unet, PIX, unload=False)
    lora.activate(unet, SEM)
    if merge_sem:
        lora.merge_lora(unet, SEM)
    return {"path": str(path), "sha256": sha256_file(path), "rank_pix": int(ck["lora_rank_unet_pix"]),
            "rank_sem": int(ck["lora_rank_unet_sem"])}


class PiSASR(DiffusionSR):
    """z_L − UNet(z_L, t=1) with the dual-LoRA mix (see module doc)."""

    def __init__(self, components, *, timestep: int = 1, lambda_pix: float = 1.0, lambda_sem: float = 1.0,
                 adjustable: bool = False, **kw):
        super().__init__(components, **kw)
        n = len(self.alphas_cumprod)
        if not 0 <= int(timestep) < n:
            raise ValueError(f"{self.name}: timestep must be in [0, {n - 1}], got {timestep}")
        self.timestep = int(timestep)
        self.lambda_pix, self.lambda_sem = float(lambda_pix), float(lambda_sem)
        self.adjustable = adjustable  # True: the semantic LoRA is unmerged and can be switched off

    def _pred(self, zt, t, emb):
        from models.sr.diffusion import lora

        if not self.adjustable:
            return self.unet(zt, t, encoder_hidden_states=emb).sample
        full = self.unet(zt, t, encoder_hidden_states=emb).sample
        lora.enable_lora(self.unet, False)
        try:
            pix = self.unet(zt, t, encoder_hidden_states=emb).sample
        finally:
            lora.enable_lora(self.unet, True)
        return self.lambda_pix * pix + self.lambda_sem * (full - pix)

    def denoise(self, z, prompt_embeds, ctx):
        import torch

        t = torch.tensor([self.timestep], device=self.device).long()
        pred = self.run_unet_tiled(lambda zt: self._pred(zt, t, prompt_embeds), z)
        return z - pred


def build(name: str, *, tiny: bool = False, weights=None, device=None, dtype=None, base=None,
          allow_download: bool | None = None, scale: int | None = None, prompt=None,
          lambda_pix: float = 1.0, lambda_sem: float = 1.0, process_size: int | None = None, **options):
    """PiSA-SR behind the SR interface.

    weights: ``pisa_sr.pkl`` (default: the resolver; the tiny variant loads one only when given).
    base:    the SD-2.1-base diffusers folder (default: the resolver; tiny: random tiny SD).
    lambda_pix, lambda_sem: the official ``--lambda_pix``/``--lambda_sem`` (1, 1 = ``--default``,
             one UNet pass; anything else runs the UNet twice).
    prompt:  "none" (default: the official empty prompt), a fixed text, "dape"/"ram", or a PromptSource.
    options: timestep (1), tile (96), tile_overlap (32), vae_encoder_tile (1024),
             vae_decoder_tile (224), color_fix ("adain"), seed (0); process_size (512; tiny 0).
    """
    if name != "pisa-sr":
        raise KeyError(f"unknown PiSA-SR model {name!r}")
    from models.sr.diffusion.components import base_components
    from models.sr.diffusion.prompts import device_and_prompt
    from models.weights import resolve

    comps = base_components(tiny=tiny, base=base, allow_download=allow_download)
    adjustable = (float(lambda_pix), float(lambda_sem)) != (1.0, 1.0)
    path = None
    if weights is not None or not tiny:
        path = resolve(PISA_PKL if weights is None else WeightsFile(str(weights).rsplit("/", 1)[-1]),
                       explicit=weights, allow_download=allow_download)
    info = {"base": comps.source}
    if path is not None:
        info.update(load_pisasr(comps, path, merge_sem=not adjustable))
        info["source"] = PISA_PKL.source
    else:
        info["weights"] = "tiny random SD, no LoRA"
    dev, src = device_and_prompt(name, device, dtype, prompt, default="none", allow_download=allow_download)
    if process_size is None:
        process_size = 0 if tiny else 512
    return PiSASR(comps, name=name + ("-tiny" if tiny else ""), scale=4 if scale is None else scale,
                  device=dev, dtype=dtype, prompt=src, process_size=process_size, lambda_pix=lambda_pix,
                  lambda_sem=lambda_sem, adjustable=adjustable, weights_info=info, **options)
