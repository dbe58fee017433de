"""Seconds per image and peak memory of the diffusion SR methods on the real SD-2.1-base
architecture (random weights: speed does not depend on the values).

    .venv/bin/python benchmarks/bench_diffusion.py                       # CPU: 128² out, fp32
    .venv/bin/python benchmarks/bench_diffusion.py --device cuda --dtype fp16 --size 512 --tiled-size 1024

For each method the UNet/VAE/text encoder are built from SD-2.1-base's configs
(``models.sr.diffusion.components.sd21_base_configs``) with the method's adapters at the official
ranks and random values, then timed through our ``upscale`` (LR = size/4, ``process_size`` off).
Baselines measured in the same run, on the same modules and input:

- ``bare``: the minimum any one-step SD SR method computes — VAE encode, one UNet call, VAE decode
  — as three plain diffusers calls, no tiling, no colour fix, no LoRA. Ratio = ours / bare.
- ``lora unmerged``: OSEDiff with its LoRA adapters left as peft layers, which is how the official
  ``test_osediff.py`` runs by default (``--merge_and_unload_lora`` off). We merge them at load time.

At ``--tiled-size`` the methods' default latent tiles (OSEDiff/PiSA 96/32, CODSR 150/50) and VAE
tiles apply (on CPU pass ``--cpu-tile 16`` to make a 256² run tile at all).
``--methods tadisr-kolors,tadisr-cogview4`` times TADiSR on its own bases (Kolors' SDXL-size UNet,
CogView4's 6.4 B transformer; ``models.sr.tadisr_bases.real_configs``) beside those bases' own bare
calls (their ratio column is to that bare row, not SD-2.1's). CogView4 at real size is skipped on CPU.
``--methods vosr-0.5b,vosr-0.5b-onestep,vosr-1.4b,vosr-1.4b-onestep`` times VOSR at the official
configs' sizes (``vosr``; ratio to SD-2.1's bare row; multi-step 25 steps with CFG, one-step tiles
512/32; the paper: ~0.094 s per 512² one-step image on an A100).
``--methods glyph-sr`` times GLYPH-SR on the real SDXL architecture (2.6 B UNet, both CLIP text
encoders) with its two SDXL-size ControlNets, random weights, ``--glyph-steps`` EDM steps (30) with
CFG and the ping-pong schedule (τ = 1: the text branch runs every other step), PP-OCR on the
upsampled LR included; beside SDXL's own bare row (VAE enc + 1 UNet call + VAE dec). SDXL's native
size is 1024² (``--size 1024`` on a GPU); on CPU the real size needs ~25 GB in fp32 and is skipped
(``--dtype bf16`` runs it; building in fp32 before the cast still peaks near 23 GB RSS).
Prints a markdown table for benchmarks/RESULTS.md; ``--plot FILE`` also draws it.
"""
from __future__ import annotations

import argparse
import platform
import resource
import time


def _sync(dev):
    import torch

    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _time(fn, arg, dev, repeat: int) -> tuple[float, float]:
    """-> (median seconds per call after two warm-up calls, peak memory GiB: CUDA allocator peak,
    or the process's peak RSS on CPU)."""
    import torch

    for _ in range(2):
        fn(arg)
    _sync(dev)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(arg)
        _sync(dev)
        ts.append(time.perf_counter() - t0)
    ts.sort()
    mem = (torch.cuda.max_memory_allocated(dev) if dev.type == "cuda"
           else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024) / 2**30
    return ts[len(ts) // 2], mem


def real_components(seed: int = 0, tiny: bool = False):
    """SD-2.1-base UNet, VAE and text encoder with random weights (float32, CPU); ``tiny``: the
    test configuration instead (a smoke run of this script in seconds)."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from models.sr.diffusion.components import SDComponents, sd21_base_configs, tiny_configs, tiny_tokenizer

    cfg = tiny_configs() if tiny else sd21_base_configs()
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**cfg["unet"]).eval().requires_grad_(False)
    vae = AutoencoderKL(**cfg["vae"]).eval().requires_grad_(False)
    te = CLIPTextModel(CLIPTextConfig(**cfg["text_encoder"])).eval().requires_grad_(False)
    return SDComponents(unet, vae, te, tiny_tokenizer(), cfg["scheduler"], source="random SD-2.1-base")


def bare_step(comps, dev, dtype):
    """VAE encode -> one UNet call at t=999 -> x0 -> VAE decode, plain diffusers calls."""
    import torch

    comps.unet.to(dev, dtype)
    comps.vae.to(dev, dtype)
    ab = comps.alphas_cumprod()[999].item()
    emb = torch.zeros(1, 77, comps.unet.config.cross_attention_dim, device=dev, dtype=dtype)
    sf = comps.vae.config.scaling_factor
    t = torch.tensor([999], device=dev)

    def run(x):
        with torch.inference_mode():
            z = comps.vae.encode(x.to(dev, dtype) * 2 - 1).latent_dist.sample() * sf
            eps = comps.unet(z, t, encoder_hidden_states=emb.expand(len(z), -1, -1)).sample
            x0 = (z - (1 - ab) ** 0.5 * eps) / ab ** 0.5
            return (comps.vae.decode(x0 / sf).sample.clamp(-1, 1) + 1) / 2
    return run


def _random_lora(model, modules, rank, adapter, seed):
    """Add a LoRA adapter and give its B matrices random values (peft zero-inits them, which
    would make merged and unmerged runs differ only in cost, not in output — fine for speed,
    but random B keeps the comparison honest about numerics too)."""
    import torch

    from models.sr.diffusion import lora

    lora.add_lora(model, modules, rank, adapter)
    g = torch.Generator().manual_seed(seed)
    for n, p in model.named_parameters():
        if f"lora_B.{adapter}" in n:
            p.data = torch.randn(p.shape, generator=g) * 1e-3


def osediff(comps, dev, dtype, merged=True, **kw):
    """Merged LoRA leaves plain modules, so the merged model costs what the base does: no adapter
    is added for it. Unmerged: OSEDiff's four adapters as peft layers (the official default)."""
    from models.sr.diffusion import lora
    from models.sr.osediff import UNET_ADAPTERS, VAE_ADAPTER, OSEDiff

    if not merged:
        for name, mods in zip(UNET_ADAPTERS, lora.unet_lora_modules(comps.unet)):
            _random_lora(comps.unet, mods, 4, name, 1)
        _random_lora(comps.vae, lora.vae_encoder_lora_modules(comps.vae), 4, VAE_ADAPTER, 2)
        lora.activate(comps.unet, UNET_ADAPTERS)
        lora.activate(comps.vae, [VAE_ADAPTER])
    return OSEDiff(comps, name="osediff" + ("" if merged else " (LoRA unmerged, official default)"),
                   device=dev, dtype=dtype, process_size=0, **kw)


def pisasr(comps, dev, dtype, adjustable=False, **kw):
    """λ = (1, 1): both LoRAs merged, one UNet pass. Otherwise the semantic LoRA stays a peft layer
    and the UNet runs twice (with and without it), as the official adjustable mode."""
    from models.sr.diffusion import lora
    from models.sr.pisasr import PARTS, SEM, PiSASR

    lam = {}
    if adjustable:
        for part, adapter, mods in zip(PARTS, SEM, lora.unet_lora_modules(comps.unet)):
            _random_lora(comps.unet, mods, 4, adapter, 3)
        lora.activate(comps.unet, SEM)
        lam = {"lambda_pix": 1.0, "lambda_sem": 0.5}
    return PiSASR(comps, name="pisa-sr" + (" (λ_sem 0.5: two passes)" if adjustable else ""), device=dev,
                  dtype=dtype, process_size=0, adjustable=adjustable, **lam, **kw)


def codsr(comps, dev, dtype, **kw):
    from models.sr.codsr import CODSR, make_sft

    return CODSR(comps, make_sft(comps.unet, comps.vae), name="codsr", device=dev, dtype=dtype, process_size=0, **kw)


def seesr(comps, dev, dtype, steps=50, tiny=False, **kw):
    """SeeSR's UNet (SD-2 + image cross-attention, 1.13 B) and ControlNet (0.49 B) at full size,
    ``steps`` DDPM steps with CFG (two UNet + ControlNet passes per step), fixed prompt, zero DAPE
    embedding (the tagger's own cost is not included)."""
    from models.sr.archs.seesr_unet import build_seesr_model, seesr_classes
    from models.sr.diffusion.components import sd21_base_configs, tiny_configs
    from models.sr.seesr import SeeSR

    dim = 16 if tiny else 512
    unet = build_seesr_model("unet", {**(tiny_configs() if tiny else sd21_base_configs())["unet"],
                                      "image_cross_attention_dim": dim})
    cn = seesr_classes()[1].from_unet(unet, load_weights_from_unet=False,
                                      **({"conditioning_embedding_out_channels": (4, 8, 16, 16)} if tiny else {}))
    cn.enable_image_attention(dim)
    comps.unet = unet.eval().requires_grad_(False)
    return SeeSR(comps, cn.eval().requires_grad_(False), name=f"seesr ({steps} steps, CFG)", device=dev,
                 dtype=dtype, prompt="", image_embeds="zeros", steps=steps, process_size=0, **kw)


METHODS = {"osediff": osediff, "pisa-sr": pisasr, "codsr": codsr, "seesr": seesr}
TADISR = {"tadisr-kolors": "kolors", "tadisr-cogview4": "cogview4"}
VOSR = ("vosr-0.5b", "vosr-0.5b-onestep", "vosr-1.4b", "vosr-1.4b-onestep")
GLYPH = ("glyph-sr",)


def glyphsr(dev, dtype, tiny: bool, steps: int, **kw):
    """GLYPH-SR on random SDXL-size networks (``models.sr.diffusion.sdxl.sdxl_configs``; tiny: the
    test SDXL) and SDXL's bare calls in the same run."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from models.ocr import create_ocr
    from models.sr.diffusion.components import tiny_tokenizer
    from models.sr.diffusion.sdxl import SDXLComponents, sdxl_configs, time_ids, tiny_sdxl
    from models.sr.glyphsr import GlyphSR, new_controlnet

    if tiny:
        comps = tiny_sdxl()
    else:
        c = sdxl_configs()
        torch.manual_seed(0)
        comps = SDXLComponents(UNet2DConditionModel(**c["unet"]), AutoencoderKL(**c["vae"]),
                               CLIPTextModel(CLIPTextConfig(**c["text_encoder"])),
                               CLIPTextModelWithProjection(CLIPTextConfig(**c["text_encoder_2"])),
                               tiny_tokenizer(), tiny_tokenizer(), c["scheduler"], source="random SDXL")
        for m in comps.modules().values():
            m.eval().requires_grad_(False)
    sr, text = (new_controlnet(comps.unet, tiny=tiny, seed=s, from_unet=False) for s in (1, 2))
    model = GlyphSR(comps, sr, text, name="glyph-sr", device=dev, dtype=dtype, ocr=create_ocr(), steps=steps, **kw)

    def bare(x):  # x: the ×4-upsampled image: VAE encode, one UNet call (no CFG), VAE decode
        with torch.inference_mode():
            z = model.vae.encode((x * 2 - 1).to(dev, model.vae_dtype)).latent_dist.mode() * model.scaling_factor
            emb, pooled = model.encode_text(["A photograph."])
            tid = time_ids(x.shape[-2], x.shape[-1], 1, dev, model.dtype)
            eps = model.unet(z.to(model.dtype), 500, encoder_hidden_states=emb,
                             added_cond_kwargs={"text_embeds": pooled, "time_ids": tid}).sample
            return model.vae.decode((eps / model.scaling_factor).to(model.vae_dtype)).sample
    return model, bare


def vosr(name: str, dev, dtype, tiny: bool, **kw):
    """VOSR with the official configs' sizes (configs/train_yml: 0.5B dim 1024 × 28 blocks, 16 heads,
    DINOv2 ViT-B/14 at 448², SD-2.1 VAE encoder + the half-width light decoder; 1.4B dim 1536 × 36,
    24 heads, DINOv2 ViT-L/14, the Qwen-Image 2-D VAE), random weights. VOSR reports ~0.094 s per
    512² one-step image on an A100."""
    import torch
    from diffusers import AutoencoderKL
    from transformers import Dinov2Config, Dinov2Model

    from models.sr import vosr as V
    from models.sr.archs.vosr_arch import LightDecoder
    from models.sr.diffusion.components import sd21_base_configs

    v = V.MODELS[name]
    if tiny:
        return V.build(name, tiny=True, device=dev, dtype=dtype, **kw)
    big = v.ae_type == "qwen"
    args = {**V.tiny_args(v.ae_type), "resolution": 512, "dim": 1536 if big else 1024, "depth": 36 if big else 28,
            "num_heads": 24 if big else 16, "enc_type": "dinov2l" if big else "dinov2b",
            "enc_dim": 1024 if big else 768, "layer_dinov2b_list": [17 if big else 8], "dinov2_size": 448}
    dit = V.dit_from_args(args, v.onestep, tiny_init_seed=0)
    enc = Dinov2Model(Dinov2Config(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16) if big
                      else Dinov2Config()).eval()
    dino = V.DinoFeatures(enc, 448, args["layer_dinov2b_list"][0])
    if big:
        from models.sr.archs.qwenimage_vae2d import QwenImageVAE2D, QwenVAE2DConfig

        codec = V.QwenCodec(QwenImageVAE2D(QwenVAE2DConfig()).eval())  # the official defaults: the real VAE
    else:
        codec = V.SD2Codec(AutoencoderKL(**sd21_base_configs()["vae"]), LightDecoder())
    if v.onestep:
        kw.setdefault("tile", 512)
        kw.setdefault("tile_overlap", 32)
    return V.VOSR(dit, codec, dino, args, name=name, onestep=v.onestep, device=dev, dtype=dtype, **kw)


def tadisr(family: str, dev, dtype, tiny: bool, **kw):
    """TADiSR on its own base (Kolors' SDXL-size UNet 2.6 B, or CogView4's 6.4 B transformer) with
    random weights and a random prompt embedding, and that base's bare calls in the same run: VAE
    encode, one backbone call, VAE decode (no skip convs, no mask decoder, no tiles)."""
    import torch

    from models.sr.archs.tadisr_arch import add_skip_convs, decoder_for_vae
    from models.sr.tadisr import FAMILIES, TADiSR
    from models.sr.tadisr_bases import KOLORS_MAX_TOKENS, random_embeddings, tiny_bases

    bases = tiny_bases(family, real=not tiny)
    add_skip_convs(bases.vae)
    decoder = decoder_for_vae(FAMILIES[family].decoder_kind, bases.vae.config,
                              groups=int(bases.vae.config.norm_num_groups))
    # the official prompt lengths: Kolors pads ChatGLM to 256 tokens; CogView4's prompt is ~60 GLM
    # tokens, left-padded to a multiple of 16
    cond = random_embeddings(family, bases.backbone, tokens=KOLORS_MAX_TOKENS if family == "kolors" else 64)
    model = TADiSR(family, bases, decoder, cond, name=f"tadisr-{family}", device=dev, dtype=dtype, **kw)

    def bare(x):  # x: the ×4-upsampled image, one tile
        with torch.inference_mode():
            z = model.vae.encode((x * 2 - 1).to(dev, model.vae_dtype)).latent_dist.mode() * model.scaling_factor
            z0 = model.denoise(z.to(model.dtype), tuple(x.shape[-2:]))
            return model.vae.decode((z0 / model.scaling_factor).to(model.vae_dtype)).sample
    return model, bare


def main():
    import torch

    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default=None, help="fp16 (CUDA default) | fp32 (CPU default) | bf16")
    ap.add_argument("--size", type=int, default=128, help="output side, untiled run")
    ap.add_argument("--tiled-size", type=int, default=256, help="output side, tiled run (0 = skip)")
    ap.add_argument("--cpu-tile", type=int, default=0, help="latent tile side for the tiled run (0 = method default)")
    ap.add_argument("--methods", default=",".join(METHODS), help=f"of {', '.join([*METHODS, *TADISR, *VOSR, *GLYPH])}")
    ap.add_argument("--tiled-methods", default="", help="methods of the tiled run (default: --methods)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seesr-steps", type=int, default=50)
    ap.add_argument("--glyph-steps", type=int, default=30)
    ap.add_argument("--tiny", action="store_true", help="tiny random SD instead of SD-2.1-base (smoke test)")
    ap.add_argument("--plot", default="", help="write a bar chart of seconds per image here (e.g. a .png)")
    a = ap.parse_args()
    dev = torch.device(a.device)
    from models.sr.diffusion.base import resolve_dtype

    dtype = resolve_dtype(dev, a.dtype, "bench")
    torch.manual_seed(0)
    rows = []
    sizes = [(a.size, False)] + ([(a.tiled_size, True)] if a.tiled_size else [])
    for size, tiled in sizes:
        x = torch.rand(1, 3, size // 4, size // 4)
        comps = real_components(tiny=a.tiny)
        bare = bare_step(comps, dev, dtype)
        up = torch.nn.functional.interpolate(x, scale_factor=4, mode="bicubic").clamp(0, 1)
        t_bare, m_bare = _time(bare, up, dev, a.repeat)
        rows.append((size, "bare (VAE enc + 1 UNet + VAE dec)", t_bare, m_bare, 1.0))
        del comps, bare
        variants = []
        for m in (a.tiled_methods or a.methods).split(",") if tiled else a.methods.split(","):
            variants.append((m, {}))
            if not tiled and m == "osediff":
                variants.append((m, {"merged": False}))
            if not tiled and m == "pisa-sr":
                variants.append((m, {"adjustable": True}))
        for name, extra in variants:
            if name in VOSR:
                kw = {"tile": a.cpu_tile * 8, "tile_overlap": a.cpu_tile * 2} if (tiled and a.cpu_tile) else \
                    ({} if tiled else {"tile": 0})
                model = vosr(name, dev, dtype, a.tiny, **kw)
                t, m = _time(model.upscale, x, dev, a.repeat)
                rows.append((size, f"{name} ({model.steps} step{'s' if model.steps > 1 else ''}"
                             f"{', CFG' if not model.onestep else ''}{', tiles' if model.tile else ''})", t, m, t / t_bare))
                del model
                if dev.type == "cuda":
                    torch.cuda.empty_cache()
                continue
            if name in GLYPH:
                if dev.type == "cpu" and not a.tiny and dtype == torch.float32:
                    print(f"skipped {name} at {size}²: SDXL + two SDXL ControlNets need ~25 GB in fp32 on CPU "
                          "(--dtype bf16 halves it)")
                    continue
                kw = {"tile": a.cpu_tile, "tile_overlap": a.cpu_tile // 4} if (tiled and a.cpu_tile) else \
                    ({} if tiled else {"tile": 0})
                model, gbare = glyphsr(dev, dtype, a.tiny, a.glyph_steps, **kw)
                up = torch.nn.functional.interpolate(x, scale_factor=4, mode="bicubic").clamp(0, 1)
                tb, mb = _time(gbare, up, dev, a.repeat)
                rows.append((size, "bare SDXL (VAE enc + 1 UNet call + VAE dec)", tb, mb, 1.0))
                t, m = _time(model.upscale, x, dev, a.repeat)
                rows.append((size, f"glyph-sr ({model.steps} EDM steps, CFG, ping-pong τ={model.tau}"
                             f"{', tiles' if model.tile and tiled else ''})", t, m, t / tb))
                del model, gbare
                if dev.type == "cuda":
                    torch.cuda.empty_cache()
                continue
            if name in TADISR:
                kw = {"tile": a.cpu_tile, "tile_overlap": a.cpu_tile // 4} if (tiled and a.cpu_tile) else \
                    ({} if tiled else {"tile": 0})
                if dev.type == "cpu" and name == "tadisr-cogview4" and not a.tiny:
                    print(f"skipped {name} at {size}²: its 6.4 B-parameter transformer needs ~26 GB in fp32 on CPU")
                    continue
                model, tbare = tadisr(TADISR[name], dev, dtype, a.tiny, **kw)
                up = torch.nn.functional.interpolate(x, scale_factor=4, mode="bicubic").clamp(0, 1)
                tb, mb = _time(tbare, up, dev, a.repeat)
                rows.append((size, f"bare {name} base (VAE enc + 1 call + VAE dec)", tb, mb, 1.0))
                t, m = _time(model.upscale_aux, x, dev, a.repeat)
                rows.append((size, f"{name} (+ skip convs, mask decoder{', Hann tiles' if kw.get('tile') else ''})",
                             t, m, t / tb))
                del model, tbare
                if dev.type == "cuda":
                    torch.cuda.empty_cache()
                continue
            comps = real_components(tiny=a.tiny)
            kw = {"tile": a.cpu_tile, "tile_overlap": a.cpu_tile // 2} if (tiled and a.cpu_tile) else {}
            if name == "seesr":
                extra = {**extra, "steps": a.seesr_steps, "tiny": a.tiny}
            model = METHODS[name](comps, dev, dtype, **extra, **kw)
            t, m = _time(model.upscale, x, dev, a.repeat)
            rows.append((size, model.name, t, m, t / t_bare))
            del model, comps
            if dev.type == "cuda":
                torch.cuda.empty_cache()
    gpu = torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or platform.machine()
    arch = "tiny test SD" if a.tiny else "SD-2.1-base architecture, random weights"
    print(f"{arch}; device: {gpu}; dtype {str(dtype).split('.')[-1]}; torch {torch.__version__}; repeat {a.repeat} (median)")
    mem = "peak GPU memory GiB" if dev.type == "cuda" else "process peak RSS GiB"
    print(f"| output | method | s/image | {mem} | ratio to bare |")
    print("|---|---|---|---|---|")
    for size, name, t, m, r in rows:
        print(f"| {size}² | {name} | {t:.3f} | {m:.2f} | {r:.2f}× |")
    if a.plot:
        _plot(rows, a.plot, f"{arch}; {gpu}; {str(dtype).split('.')[-1]}")
        print(f"plot: {a.plot}")


def _plot(rows, path, title):
    """Each method's time as a multiple of the bare calls (linear, from 0), one panel per output
    size, the seconds written beside each bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted({r[0] for r in rows})
    fig, axes = plt.subplots(1, len(sizes), figsize=(6.5 * len(sizes), 0.5 + 0.45 * len(rows)), squeeze=False)
    for ax, size in zip(axes[0], sizes):
        sel = [r for r in rows if r[0] == size]
        ax.barh(range(len(sel)), [r[4] for r in sel], color=["#888"] + ["#3a7"] * (len(sel) - 1))
        ax.set_yticks(range(len(sel)), [r[1] for r in sel], fontsize=8)
        for i, r in enumerate(sel):
            ax.text(r[4], i, f" {r[4]:.2f}× ({r[2]:.2f} s)", va="center", fontsize=8)
        ax.axvline(1.0, color="#444", lw=0.8, ls="--")
        ax.set_xlim(0, max(r[4] for r in sel) * 1.35)
        ax.set_xlabel("time per image / bare (VAE enc + 1 UNet + VAE dec)")
        ax.set_title(f"{size}² output", fontsize=10)
        ax.invert_yaxis()
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)

if __name__ == "__main__":
    main()
