"""SeeSR (Wu et al., "SeeSR: Towards Semantics-Aware Real-World Image Super-Resolution", CVPR 2024;
github.com/cswry/SeeSR, Apache-2.0) on SD-2-base, and ``seesr-srsr``: SeeSR with the SRSR plug-in
(``models.sr.srsr``).

Inference as the official ``test_seesr.py`` + ``pipelines/pipeline_seesr.py`` (read at commit
8edecc7), with these facts verified in that code:

- Networks: SeeSR's own ``unet/`` and ``controlnet/`` diffusers folders (HF ``CSWRY/SeeSR``,
  subfolder ``seesr/``), with image cross-attention on DAPE's representation embedding (see
  ``models.sr.archs.seesr_unet``); VAE, CLIP text encoder, tokenizer and scheduler config from
  ``stabilityai/stable-diffusion-2-base``.
- Tags and embedding: DAPE (RAM Swin-L + ``DAPE.pth`` LoRA) on the *original* LR image resized to
  384x384 and ImageNet-normalised; ``generate_tag`` gives the tags (", "-joined), and
  ``generate_image_embeds`` = ``image_proj(visual_encoder(x))`` (N x 145 x 512) feeds the image
  cross-attention of both networks, the same for both CFG halves.
- Prompt ``f"{tags}, {prompt}," + added_prompt`` with added prompt "clean, high-resolution, 8k";
  negative prompt "dotted, noise, blur, lowres, smooth"; CFG scale 5.5; 50 steps.
- Scheduler: diffusers' ``DDPMScheduler`` from SD-2-base's scheduler config ("leading" spacing,
  steps_offset 1: t = 981, 961, ..., 1), its ``step`` with the generator (DDPM variance noise).
- Start point ``lr`` (default): x_T = ``add_noise(z_LR, ε, t=999)`` with z_LR the VAE latent
  (posterior *sampled*) of the bicubic-upscaled LR; ``noise`` starts from ε alone.
- ControlNet input: the bicubic-upscaled LR in [0, 1]; conditioning scale 1.
- Pre-processing: LR whose short side is below process_size/4 = 128 is first enlarged to it; then
  ×4 (PIL bicubic) and cut to a multiple of 8; the output is resized back to 4× the input.
- Latent tiling when h·w > 96² latent px (tile 96, overlap 4, Gaussian weights of var 0.01) on the
  CFG-doubled batch, CFG applied after stitching; VAE tiled ("tiled VAE" hook) with encoder tiles
  1024 px and decoder tiles 224 latent px; colour fix AdaIN by default (``--align_method``).

Differences, deliberate: the DiffusionSR core's pre-processing (pad to a multiple of 8 instead of a
resize; torch's bicubic; float colour fix; per-tile GroupNorm in the tiled VAE); latents are kept
in float32 between steps (the networks run in ``dtype``); every random draw (start noise, VAE posterior, DDPM variance) comes from a generator seeded by
``seed``, one per image, so an image's result does not depend on its batch (the official VAE
sample uses the global RNG).

Without DAPE: the official code always runs the tagger (its image embedding is required; training
never dropped it). Here ``prompt="dape"`` (default) needs RAM + DAPE weights and RAM's tag list and
thresholds (our port, ``models.sr.diffusion.ram``; files through the resolver), else WeightsMissingError.
``prompt="none"`` or a fixed text replaces the tags; the image cross-attention then gets
``image_embeds="zeros"`` unless ``image_embeds="dape"`` is asked for: an all-zero embedding makes
each image attention's keys and values zero (their projections have no bias), so it adds only its
output bias, while those blocks' self-attention and feed-forward still run. The network never saw
that in training: it is a choice for running without DAPE, not SeeSR's own behaviour.
"""
from __future__ import annotations

from pathlib import Path

from models.sr.diffusion.base import DiffusionSR, randn
from models.weights import WeightsFile, WeightsFolder

SD2_BASE = WeightsFolder(
    "stable-diffusion-2-base", hf_repo="stabilityai/stable-diffusion-2-base",
    required=("scheduler/scheduler_config.json", "tokenizer/vocab.json", "tokenizer/merges.txt",
              "text_encoder/config.json", "vae/config.json"),
    allow_patterns=("scheduler/*", "tokenizer/*", "text_encoder/config.json", "text_encoder/model.safetensors",
                    "vae/config.json", "vae/diffusion_pytorch_model.safetensors"))
SEESR = WeightsFolder(
    "seesr", hf_repo="CSWRY/SeeSR",
    required=("seesr/unet/config.json", "seesr/unet/diffusion_pytorch_model.safetensors",
              "seesr/controlnet/config.json", "seesr/controlnet/diffusion_pytorch_model.safetensors"),
    allow_patterns=("seesr/unet/*", "seesr/controlnet/*"))
DAPE_SEESR = WeightsFile("DAPE.pth", hf_repo="CSWRY/SeeSR")
ADDED_PROMPT = "clean, high-resolution, 8k"
NEGATIVE_PROMPT = "dotted, noise, blur, lowres, smooth"
IMAGE_EMBEDS = ("dape", "zeros")
TINY_TAGS = ("text", "letter", "sign", "sky", "tree", "person", "building", "car")


def needs():
    """Every file/folder the full models need: SD-2-base, SeeSR's networks, DAPE (RAM Swin-L + the
    LoRA from SeeSR's repo); SRSR's default grounding adds Grounding DINO and SAM."""
    from models.sr.diffusion.ram import RAM_SWIN_L, RAM_TAG_LIST, RAM_TAG_THRESHOLDS
    from models.sr.srsr import GROUNDING_DINO, SAM

    seesr = (SD2_BASE, SEESR, RAM_SWIN_L, DAPE_SEESR, RAM_TAG_LIST, RAM_TAG_THRESHOLDS)
    return {"seesr": seesr, "seesr-srsr": seesr + (GROUNDING_DINO, SAM)}


# -- weights ---------------------------------------------------------------------------------------
def find_seesr(weights=None, allow_download: bool | None = None) -> Path:
    """The folder holding SeeSR's ``unet/`` and ``controlnet/``: ``weights`` when given (either that
    layout or the HF repo's, with them under ``seesr/``), else the resolver (FolderMissingError)."""
    from models.weights import resolve_folder

    if weights is not None:
        p = Path(weights).expanduser()
        for cand in (p, p / "seesr"):
            if (cand / "unet" / "config.json").is_file() and (cand / "controlnet" / "config.json").is_file():
                return cand
    return resolve_folder(SEESR, explicit=weights, allow_download=allow_download) / "seesr"


def load_base(path):
    """SD-2-base's VAE, text encoder, tokenizer and scheduler config from a diffusers folder (fp32,
    CPU); the base UNet is not loaded (SeeSR brings its own)."""
    import json

    import torch
    from diffusers import AutoencoderKL
    from transformers import CLIPTextModel, CLIPTokenizer

    from models.sr.diffusion.components import SDComponents

    path = Path(path)
    vae = AutoencoderKL.from_pretrained(path, subfolder="vae", torch_dtype=torch.float32).eval().requires_grad_(False)
    te = CLIPTextModel.from_pretrained(path / "text_encoder", torch_dtype=torch.float32).eval().requires_grad_(False)
    tok = CLIPTokenizer.from_pretrained(path / "tokenizer")
    sched = json.loads((path / "scheduler" / "scheduler_config.json").read_text())
    return SDComponents(None, vae, te, tok, sched, source=str(path))


def tiny_seesr_nets(seed: int = 0, image_dim: int = 16):
    """A tiny random SeeSR UNet + ControlNet on the core's tiny SD configuration (ControlNet zero
    convs randomised too, so the LR condition matters)."""
    import torch

    from models.sr.archs.seesr_unet import build_seesr_model, seesr_classes
    from models.sr.diffusion.components import tiny_configs

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        unet = build_seesr_model("unet", {**tiny_configs()["unet"], "image_cross_attention_dim": image_dim})
        cn = seesr_classes()[1].from_unet(unet, conditioning_embedding_out_channels=(4, 8, 16, 16),
                                          load_weights_from_unet=False)
        cn.enable_image_attention(image_dim)
        with torch.no_grad():
            for p in cn.parameters():
                if not p.any():
                    p.normal_(0, 0.02)
    return unet.eval().requires_grad_(False), cn.eval().requires_grad_(False)


def write_tiny_seesr(path, seed: int = 0) -> Path:
    """Write a tiny SeeSR checkpoint in the official layout (``unet/`` + ``controlnet/`` with
    ``config.json`` and ``diffusion_pytorch_model.safetensors``)."""
    from models.sr.archs.seesr_unet import save_seesr_model

    unet, cn = tiny_seesr_nets(seed)
    save_seesr_model(unet, Path(path) / "unet")
    save_seesr_model(cn, Path(path) / "controlnet")
    return Path(path)


# -- taggers ---------------------------------------------------------------------------------------
def make_tagger(**kw):
    """DAPE as SeeSR uses it (the official ``ram_transforms`` on the LR: 384x384, ImageNet
    normalisation): ``tags_and_embeds(lr)`` -> (N lists of tags, N x 145 x 512 ``generate_image_embeds``).
    ``kw``: see ``models.sr.diffusion.ram.RAMTagger``."""
    from models.sr.diffusion.ram import RAMTagger

    return RAMTagger(**kw)


class TinyTagger:
    """The tiny configuration's stand-in for DAPE (random, deterministic per image): a patch
    embedding of the 32x32-pooled image as the representation embedding (N x 17 x dim) and the
    two best of ``TINY_TAGS`` under a random linear head as tags."""

    kind = "tiny-tagger"

    def __init__(self, dim: int = 16, seed: int = 0):
        import torch

        g = torch.Generator().manual_seed(seed)
        self.proj = torch.randn(3 * 8 * 8, dim, generator=g) / 8
        self.head = torch.randn(dim, len(TINY_TAGS), generator=g)

    def tags_and_embeds(self, lr):
        import torch.nn.functional as F

        x = F.adaptive_avg_pool2d(lr.float().cpu(), 32)
        patches = F.unfold(x, 8, stride=8).transpose(1, 2)  # N x 16 x 192
        emb = patches @ self.proj
        emb = F.pad(emb, (0, 0, 1, 0)) + F.pad(emb.mean(1, keepdim=True), (0, 0, 0, 16))
        top = (emb[:, 0] @ self.head).topk(2, -1).indices.sort(-1).values
        return [[TINY_TAGS[i] for i in row] for row in top.tolist()], emb.to(lr.device)


# -- the model --------------------------------------------------------------------------------------
class SeeSR(DiffusionSR):
    """SeeSR's multi-step ControlNet sampling (see module doc); ``srsr`` turns on SRSR.

    components: SDComponents with ``unet`` = SeeSR's UNet (+ VAE, text encoder, tokenizer, scheduler).
    controlnet: SeeSR's ControlNet. tagger: ``.tags_and_embeds(lr)`` (DAPE or the tiny stand-in) or
    None. prompt: None = the tagger's tags, else this fixed text in their place. image_embeds:
    "dape" | "zeros" (see module doc). srsr: None or a dict with ``grounder`` (``models.sr.srsr``).
    """

    tile_row_shift = 0.5  # OSEDiff's _gaussian_weights, rows centred at h/2

    def __init__(self, components, controlnet, *, tagger=None, prompt: str | None = None, user_prompt: str = "",
                 added_prompt: str = ADDED_PROMPT, negative_prompt: str = NEGATIVE_PROMPT,
                 image_embeds: str = "dape", steps: int = 50, cfg: float = 5.5, conditioning_scale: float = 1.0,
                 start_point: str = "lr", start_step: int = 999, srsr: dict | None = None,
                 tile: int = 96, tile_overlap: int = 4, **kw):
        super().__init__(components, tile=tile, tile_overlap=tile_overlap, **kw)
        from diffusers import DDPMScheduler
        from diffusers.utils import logging as dlog

        if image_embeds not in IMAGE_EMBEDS:
            raise ValueError(f"{self.name}: image_embeds must be one of {IMAGE_EMBEDS}; got {image_embeds!r}")
        if (prompt is None or image_embeds == "dape") and tagger is None:
            raise ValueError(f"{self.name}: the DAPE tags/embedding were asked for but no tagger was given")
        if start_point not in ("lr", "noise"):
            raise ValueError(f"{self.name}: start_point must be 'lr' or 'noise'; got {start_point!r}")
        if int(steps) < 1:
            raise ValueError(f"{self.name}: steps must be >= 1, got {steps}")
        level = dlog.get_verbosity()
        dlog.set_verbosity_error()
        try:
            self.controlnet = controlnet.to(self.device, self.dtype).eval().requires_grad_(False)
        finally:
            dlog.set_verbosity(level)
        self.tagger, self.fixed_prompt, self.user_prompt = tagger, prompt, user_prompt
        self.added_prompt, self.negative_prompt, self.image_embeds = added_prompt, negative_prompt, image_embeds
        self.steps, self.cfg, self.conditioning_scale = int(steps), float(cfg), float(conditioning_scale)
        self.start_point, self.start_step = start_point, int(start_step)
        cfg_dict = {k: v for k, v in components.scheduler_config.items() if not k.startswith("_")}
        self.scheduler = DDPMScheduler.from_config(cfg_dict)
        self.image_dim = int(self.unet.config.get("image_cross_attention_dim", 512))
        self.srsr = dict(srsr) if srsr else None
        self.last_prompts: list[str] = []
        self.last_groundings: list = []
        if self.srsr is not None:
            from models.sr.srsr import SRCAState, install_srca

            self.srca = SRCAState()
            self.srca_layers = install_srca(self.unet, self.srca)

    # -- prompts ---------------------------------------------------------------------------------
    def _format(self, tags: list[str]) -> tuple[str, list[tuple[int, int]]]:
        """The official prompt string and the character span of every tag in it."""
        spans, pos = [], 0
        for t in tags:
            spans.append((pos, pos + len(t)))
            pos += len(t) + 2
        return f"{', '.join(tags)}, {self.user_prompt}," + self.added_prompt, spans

    def _conditioning(self, lr):
        """Per image: its tag list (the tagger's, or the fixed prompt split at commas) and the
        N x T x D image embedding (the tagger's, or zeros)."""
        import torch

        tags, emb = [None] * lr.shape[0], None
        if self.tagger is not None and (self.fixed_prompt is None or self.image_embeds == "dape"):
            tag_lists, emb = self.tagger.tags_and_embeds(lr)
            if self.fixed_prompt is None:
                tags = tag_lists
        if self.image_embeds == "zeros" or emb is None:
            emb = torch.zeros(lr.shape[0], 1, self.image_dim, device=self.device)
        if self.fixed_prompt is not None:
            tags = [[t for t in (s.strip() for s in self.fixed_prompt.split(",")) if t]] * lr.shape[0]
        return tags, emb.to(self.device, self.dtype)

    # -- sampling --------------------------------------------------------------------------------
    def _eps(self, z, t, text, img_emb, cond_img, masks=None, tags=None):
        """ControlNet + UNet noise prediction for one (tile of the) CFG batch."""
        def run(zt, ct, *mt):
            if mt:
                self.srca.set(mt[0], tags)
            try:
                down, mid = self.controlnet(zt, t, encoder_hidden_states=text, controlnet_cond=ct,
                                            conditioning_scale=self.conditioning_scale, return_dict=False,
                                            image_encoder_hidden_states=img_emb)
                return self.unet(zt, t, encoder_hidden_states=text, down_block_additional_residuals=down,
                                 mid_block_additional_residual=mid, return_dict=False,
                                 image_encoder_hidden_states=img_emb)[0]
            finally:
                if mt:
                    self.srca.clear()

        extra = (masks,) if masks is not None else ()
        return self.run_unet_tiled(run, z.to(self.dtype), cond_img, *extra)

    def sample(self, z_lr, noise, text, neg, img_emb, cond_img, generator, srsr_in=None):
        """The denoising loop: latents (float32) from the start point to t = 1 -> x0 latent.
        ``generator``: one torch.Generator, or a list of one per image (DDPM variance noise)."""
        import torch

        from models.sr.srsr import stcfg

        sch = self.scheduler
        sch.set_timesteps(self.steps, device=self.device)
        if self.start_point == "lr":
            t0 = torch.full((z_lr.shape[0],), self.start_step, device=self.device, dtype=torch.long)
            lat = sch.add_noise(z_lr.float(), noise, t0)
        else:
            lat = noise * sch.init_noise_sigma
        guided = self.cfg > 1.0
        emb = torch.cat([neg, text]) if guided else text
        ie = torch.cat([img_emb, img_emb]) if guided else img_emb
        ci = torch.cat([cond_img, cond_img]) if guided else cond_img
        masks = tags = ungrounded = None
        if srsr_in is not None:
            masks, tags, ungrounded = srsr_in
            if guided:  # the unconditional rows: no tags, so no SRCA restriction
                masks = torch.cat([torch.zeros_like(masks), masks])
                tags = torch.cat([torch.full_like(tags, -1), tags])
        for t in sch.timesteps:
            if t > self.start_step:
                continue
            inp = torch.cat([lat, lat]) if guided else lat
            inp = sch.scale_model_input(inp, t)
            eps = self._eps(inp, t, emb, ie, ci, masks, tags).float()
            if guided:
                eu, ec = eps.chunk(2)
                eps = stcfg(eu, ec, self.cfg, ungrounded)
            lat = sch.step(eps, t, lat, generator=generator, return_dict=False)[0]
        return lat

    def _srsr_inputs(self, lr, tags, size, pad_to):
        """Ground every image's tags (LR image), build the prompts and the SRCA/STCFG masks."""
        import numpy as np
        import torch

        from models.sr.srsr import latent_masks, tag_token_index

        imgs = (lr.permute(0, 2, 3, 1).clamp(0, 1) * 255).round().byte().cpu().numpy()
        ground = [self.srsr["grounder"].ground(np.ascontiguousarray(im), t) for im, t in zip(imgs, tags)]
        self.last_groundings = ground
        prompts, idx, lat = [], [], []
        for g in ground:
            p, spans = self._format(g.tags)
            prompts.append(p)
            idx.append(tag_token_index(self.c.tokenizer, p, spans))
            lat.append(latent_masks(g.masks, size, pad_to))
        k = max(1, max(m.shape[0] for m in lat))
        masks = torch.stack([torch.cat([m, m.new_zeros(k - m.shape[0], *m.shape[1:])]) for m in lat])
        ungrounded = ~masks.any(1, keepdim=True)
        dev = self.device
        return prompts, (masks.to(dev), torch.stack(idx).to(dev), ungrounded.to(dev))

    def _forward(self, batch):
        import torch

        n, _, h, w = batch.shape
        lr0 = batch.to(self.device, torch.float32)
        with torch.inference_mode():
            tags, img_emb = self._conditioning(lr0)  # official: DAPE sees the original LR
        _, up, x, enlarged = self._prepare(lr0)
        H, W = up.shape[-2:]
        with torch.inference_mode():
            srsr_in = None
            if self.srsr is not None:
                prompts, srsr_in = self._srsr_inputs(lr0, tags, (H, W), tuple(x.shape[-2:]))
            else:
                prompts = [self._format(t)[0] for t in tags]
            self.last_prompts = prompts
            text = self.encode_prompts(prompts)
            neg = self.encode_prompts([self.negative_prompt] * n)
            # one generator per image, all seeded alike: an image's result does not depend on the
            # batch it came in (the official script runs one image at a time)
            gens = [self.make_generator() for _ in range(n)]
            noise = randn((n, 4, x.shape[-2] // 8, x.shape[-1] // 8), gens, self.device)
            z_lr = self.encode(x * 2 - 1, gens) if self.start_point == "lr" else None  # official order
            z0 = self.sample(z_lr, noise, text, neg, img_emb, x.to(self.dtype), gens, srsr_in)
            return self._finish(z0, up, (h * self.scale, w * self.scale), enlarged)


def build(name: str, *, tiny: bool = False, weights=None, device=None, dtype=None, base=None,
          allow_download: bool | None = None, scale: int | None = None, prompt="dape", user_prompt: str = "",
          image_embeds: str | None = None, ram_weights=None, dape_weights=None, tag_list=None, tag_thresholds=None,
          process_size: int | None = None, grounding: str | None = None, ocr_engine="rapidocr-ppocrv4",
          ocr_words: bool = False, text_tags=None, grounding_dino=None, sam=None,
          box_threshold: float = 0.3, text_threshold: float = 0.25, seed_nets: int = 0, **options):
    """SeeSR (``seesr``) or SeeSR + SRSR (``seesr-srsr``) behind the SR interface.

    weights: SeeSR's folder (``unet/`` + ``controlnet/``, or the HF repo layout with ``seesr/``);
             default: the resolver (``CSWRY/SeeSR``); tiny: random tiny nets unless given.
    base:    SD-2-base's diffusers folder (default: the resolver; tiny: the core's tiny random SD).
    prompt:  "dape" (default: DAPE tags; tiny: the tiny tagger) | "ram" (RAM without the DAPE
             LoRA) | "none" | a fixed text of comma-separated tags (replaces the tags). user_prompt: the official ``--prompt`` (after the tags). image_embeds:
             "dape" | "zeros" (default "dape" with DAPE tags, else "zeros"; see module doc).
    ram_weights, dape_weights, tag_list, tag_thresholds: the tagger's files (default: the resolver).
    options: steps (50; tiny 3), cfg (5.5), added_prompt, negative_prompt, seed (0), conditioning_scale (1),
             start_point ("lr"), tile (96), tile_overlap (4), vae_encoder_tile (1024),
             vae_decoder_tile (224), color_fix ("adain"), process_size (512; tiny 0).
    SRSR (``seesr-srsr``): grounding ("grounded-sam+ocr" (default) | "grounded-sam" | "ocr" (tiny
             default: runs offline)), ocr_engine,
             ocr_words, text_tags, grounding_dino / sam (folders), box_threshold, text_threshold.
    """
    if name not in ("seesr", "seesr-srsr"):
        raise KeyError(f"unknown SeeSR model {name!r}")
    import torch

    from models.sr.archs.seesr_unet import load_seesr_model
    from models.sr.diffusion.base import resolve_dtype
    from models.sr.diffusion.components import find_base, tiny_components
    from models.weights import resolve

    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    resolve_dtype(dev, dtype, name)  # refuse fp16 on CPU before loading anything
    comps = load_base(find_base(base, allow_download, SD2_BASE)) if base is not None or not tiny \
        else tiny_components(text=True)
    info = {"base": comps.source}
    if weights is not None or not tiny:
        folder = find_seesr(weights, allow_download)
        unet, cn = load_seesr_model("unet", folder / "unet"), load_seesr_model("controlnet", folder / "controlnet")
        info.update(weights=str(folder), source=SEESR.source)
    else:
        unet, cn = tiny_seesr_nets(seed_nets)
        info["weights"] = f"tiny random SeeSR (seed {seed_nets})"
    comps.unet = unet
    key = (prompt or "none").strip().lower() if isinstance(prompt, str) else None
    if key is None:
        raise TypeError(f"{name}: prompt must be a string ('dape', 'none' or a text), got {type(prompt).__name__}")
    fixed = None if key in ("dape", "ram") else ("" if key == "none" else prompt)
    image_embeds = image_embeds or ("dape" if fixed is None else "zeros")
    tagger = None
    if fixed is None or image_embeds == "dape":
        if tiny:
            tagger = TinyTagger(int(unet.config.get("image_cross_attention_dim", 512)))
        else:
            dape = resolve(DAPE_SEESR, explicit=dape_weights, allow_download=allow_download) if key != "ram" else None
            # fp32 as the official script runs it (the tagger is outside its autocast)
            tagger = make_tagger(dape=key != "ram", ram_weights=ram_weights, dape_weights=dape, tag_list=tag_list,
                                 tag_thresholds=tag_thresholds, allow_download=allow_download, device=dev,
                                 dtype=torch.float32)
    srsr = None
    if name == "seesr-srsr":
        from models.sr.srsr import TEXT_TAGS, make_grounder

        grounding = grounding or ("ocr" if tiny else "grounded-sam+ocr")
        srsr = {"grounder": make_grounder(grounding, ocr_engine=ocr_engine, ocr_words=ocr_words,
                                          text_tags=TEXT_TAGS if text_tags is None else text_tags,
                                          dino=grounding_dino, sam=sam, allow_download=allow_download,
                                          device=dev, box_threshold=box_threshold, text_threshold=text_threshold),
                "grounding": grounding}
        info["srsr"] = {"grounding": grounding, "box_threshold": box_threshold, "text_threshold": text_threshold,
                        "ocr_engine": ocr_engine, "ocr_words": ocr_words}
    if process_size is None:
        process_size = 0 if tiny else 512
    if tiny:
        options.setdefault("steps", 3)  # the tiny variant is for tests and dry runs: ~1 s on CPU
    return SeeSR(comps, cn, name=name + ("-tiny" if tiny else ""), scale=4 if scale is None else scale,
                 device=dev, dtype=dtype, tagger=tagger, prompt=fixed, user_prompt=user_prompt,
                 image_embeds=image_embeds, srsr=srsr, process_size=process_size, weights_info=info, **options)
