"""The 2D Qwen-Image VAE that VOSR-1.4B uses as its latent codec.

VOSR (Wu et al., "VOSR: A Vision-Only Generative Model for Image Super-Resolution", CVPR 2026;
github.com/cswry/VOSR, Apache-2.0, commit 25fbf8e; that file is itself Apache-2.0 from the
Qwen-Image, Wan and HuggingFace teams) ships
``models/qwenimage_vae2d.py::AutoencoderKLQwenImage2D``: Qwen-Image's VAE (a Wan-style causal 3D
video VAE, diffusers ``AutoencoderKLQwenImage``) re-written as an image-only 2D network, with its
weights in ``preset/ckpts/Qwen-Image-vae-2d/`` (read with diffusers ``ModelMixin.from_pretrained``,
so ``config.json`` + ``diffusion_pytorch_model.safetensors``; the names are diffusers' defaults —
the HF listing of CSWRY/VOSR could not be read from here, so they are unverified). This file is our
own ``nn.Module`` with the official parameter names and shapes, so that file loads strictly.

Why a port and not diffusers' 3D class: the 2D checkpoint has 4-D conv kernels and ``(C, 1, 1)``
norm gains where the 3D class wants 5-D kernels, ``(C, 1, 1, 1)`` gains and ``time_conv`` weights
the 2D file lacks; and the 3D class runs a per-frame cache machinery that only slows an image down.
For one frame the 3D network *is* this network: its causal convolutions zero-pad two frames in
front, so only the kernel's last time slice meets the frame, and ``time_conv`` is skipped on the
first frame. tests/test_qwen_vae2d.py checks exactly that equality against diffusers.

Network (official ``__init__`` defaults = Qwen-Image): ``base_dim`` 96, ``z_dim`` 16, ``dim_mult``
(1, 2, 4, 4), ``num_res_blocks`` 2, no attention outside the mid blocks, SiLU, RMS norm
``normalize(x, dim=1)·√C·γ``; ×8 down/up (``2**(len(dim_mult)-1)``); 16 latent channels.

What the official code does, and who does which part:

* ``vae.encode(x)`` (x: N×3×H×W in [-1, 1]) -> ``DiagonalGaussianDistribution(quant_conv(enc(x)))``:
  mean, logvar = the 32 channels split in two, logvar clamped to [-30, 20]. Here:
  :meth:`QwenImageVAE2D.encode_moments` (mean, clamped logvar) and :meth:`QwenImageVAE2D.encode`
  (``sample=True``: mean + exp(logvar/2)·ε, as diffusers' ``sample``; ``sample=False``: the mean).
* ``vae.decode(z)`` -> ``clamp(decoder(post_quant_conv(z)), -1, 1)``: :meth:`QwenImageVAE2D.decode`.
* The *caller* (VOSR's ``inference_vosr*.py::_encode_latent/_decode_latent`` and ``train_vosr*.py``,
  not the VAE) normalises: it encodes with ``latent_dist.sample()`` (the global RNG, unseeded per
  image) and feeds the DiT ``(z − latents_mean) / latents_std`` per channel; the DiT's output z'
  is decoded as ``vae.decode(z'·latents_std + latents_mean)`` and clamped to [-1, 1] again. The
  constants are the folder config's ``latents_mean``/``latents_std`` (the official defaults, used
  when the config has none, are :data:`LATENTS_MEAN`/:data:`LATENTS_STD`). A caller applies them
  with :meth:`QwenImageVAE2D.normalize_latent` / :meth:`QwenImageVAE2D.denormalize_latent`.

Deliberate differences: sampling takes a generator (the official draws from the global RNG); in
fp16/bf16 the RMS norm is computed in fp32 (as diffusers' 3D class does; the official computes it
in the input dtype — it runs fp32 throughout, where the two are identical); the mid-block attention
also works on a 1×1 latent (the official ``squeeze(1)`` breaks there). As in the official, an odd
side is floored at each down step, so callers pad images to a multiple of 8 to get H×W back.
"""
from __future__ import annotations

import itertools
import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from models.sr.checkpoint import CheckpointError, check_keys
from models.weights import WeightsFolder, resolve_folder

# Official defaults of AutoencoderKLQwenImage2D (= Qwen-Image's VAE config), per latent channel.
LATENTS_MEAN = (-0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
                0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921)
LATENTS_STD = (2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
               3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160)

SUBFOLDER = "Qwen-Image-vae-2d"
WEIGHT_NAMES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
# The README says to download CSWRY/VOSR into preset/ckpts/, so the VAE is taken to be the repo's
# Qwen-Image-vae-2d/ subfolder (unverified: the HF file list was not readable from here; a search
# hit shows the repo also holds a VOSR2/ folder the README does not name). ``$TEXTSR_WEIGHTS/VOSR``
# is that repo snapshot, shared with VOSR's checkpoint folders (``models.sr.vosr.checkpoint_folder``).
QWEN_VAE2D = WeightsFolder(
    "VOSR", hf_repo="CSWRY/VOSR",
    required=(f"{SUBFOLDER}/config.json", f"{SUBFOLDER}/diffusion_pytorch_model.safetensors"),
    allow_patterns=(f"{SUBFOLDER}/*",))

_ACTIVATIONS = {"silu": nn.SiLU, "swish": nn.SiLU, "mish": nn.Mish, "gelu": nn.GELU, "relu": nn.ReLU}
# Keys of the official config.json that carry no structure: diffusers' bookkeeping ("_class_name",
# "_diffusers_version", "_name_or_path" start with "_"), and the 3D class's input_channels (always 3).
_INERT = ("input_channels",)


@dataclass(frozen=True)
class QwenVAE2DConfig:
    """The official ``AutoencoderKLQwenImage2D`` constructor arguments (same names and defaults)."""

    base_dim: int = 96
    z_dim: int = 16
    dim_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    attn_scales: tuple[float, ...] = ()
    temperal_downsample: tuple[bool, ...] = (False, True, True)  # [sic]; unused by the 2D network
    dropout: float = 0.0
    latents_mean: tuple[float, ...] = LATENTS_MEAN
    latents_std: tuple[float, ...] = LATENTS_STD
    non_linearity: str = "silu"

    @classmethod
    def from_dict(cls, d: dict, where: str = "config") -> QwenVAE2DConfig:
        """Parse a ``config.json`` dict; unknown keys are an error naming them (None means the default)."""
        names = {f.name for f in fields(cls)}
        unknown = [k for k in d if k not in names and not k.startswith("_") and k not in _INERT]
        if unknown:
            raise CheckpointError(f"{where}: unknown key(s) {', '.join(sorted(unknown))} for the 2D Qwen-Image "
                                  f"VAE (known: {', '.join(sorted(names))}); is this VOSR's {SUBFOLDER} config?")
        if d.get("input_channels", 3) != 3:
            raise CheckpointError(f"{where}: input_channels={d['input_channels']}; the 2D VAE takes RGB (3)")
        kw = {}
        for k in names & set(d):
            v = d[k]
            if v is None:
                continue
            kw[k] = tuple(v) if isinstance(v, list) else v
        cfg = cls(**kw)
        if cfg.non_linearity not in _ACTIVATIONS:
            raise CheckpointError(f"{where}: non_linearity {cfg.non_linearity!r} is not one of {', '.join(_ACTIVATIONS)}")
        if len(cfg.latents_mean) != cfg.z_dim or len(cfg.latents_std) != cfg.z_dim:
            raise CheckpointError(f"{where}: latents_mean/latents_std need z_dim={cfg.z_dim} values, got "
                                  f"{len(cfg.latents_mean)}/{len(cfg.latents_std)}")
        return cfg

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def tiny_config() -> dict:
    """Same classes as the real VAE (attention in the mid blocks, channel changes, 3 down/up steps,
    16 latent channels, ×8) at widths 8..32 and one res block per level: CPU-fast."""
    return QwenVAE2DConfig(base_dim=8, num_res_blocks=1).to_dict()


# -- blocks (attribute names are the official ones: they are the checkpoint's key names) ------------
class RMSNorm2D(nn.Module):
    """``normalize(x, dim=1)·√C·γ``, γ of shape (C, 1, 1); no bias (the official never sets one)."""

    def __init__(self, dim: int):
        super().__init__()
        self.scale = dim ** 0.5
        self.gamma = nn.Parameter(torch.ones(dim, 1, 1))

    def forward(self, x):
        # fp16 squares overflow for large activations; fp32 gives the official fp32 result
        h = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        return F.normalize(h, dim=1).to(x.dtype) * self.scale * self.gamma


class ResidualBlock2D(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, dropout: float, act: str):
        super().__init__()
        self.nonlinearity = _ACTIVATIONS[act]()
        self.norm1 = RMSNorm2D(in_dim)
        self.conv1 = nn.Conv2d(in_dim, out_dim, 3, padding=1)
        self.norm2 = RMSNorm2D(out_dim)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_dim, out_dim, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(in_dim, out_dim, 1) if in_dim != out_dim else nn.Identity()

    def forward(self, x):
        h = self.conv1(self.nonlinearity(self.norm1(x)))
        h = self.conv2(self.dropout(self.nonlinearity(self.norm2(h))))
        return h + self.conv_shortcut(x)


class AttentionBlock2D(nn.Module):
    """Single-head self-attention over all H·W positions; q, k, v are channel thirds of ``to_qkv``."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = RMSNorm2D(dim)
        self.to_qkv = nn.Conv2d(dim, dim * 3, 1)
        self.proj = nn.Conv2d(dim, dim, 1)

    def forward(self, x):
        b, c, h, w = x.shape
        qkv = self.to_qkv(self.norm(x)).reshape(b, 3, c, h * w).transpose(2, 3)
        out = F.scaled_dot_product_attention(qkv[:, 0], qkv[:, 1], qkv[:, 2])  # b × hw × c
        return self.proj(out.transpose(1, 2).reshape(b, c, h, w)) + x


class Resample2D(nn.Module):
    """``downsample2d``: pad right/bottom by 1, 3×3 conv stride 2. ``upsample2d``: nearest ×2 (the 3D
    class's "nearest-exact" picks the same pixels at ×2), 3×3 conv to ``dim // 2`` channels."""

    def __init__(self, dim: int, mode: str):
        super().__init__()
        if mode == "downsample2d":
            self.resample = nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(dim, dim, 3, stride=2))
        elif mode == "upsample2d":
            self.resample = nn.Sequential(nn.Upsample(scale_factor=2.0, mode="nearest"),
                                          nn.Conv2d(dim, dim // 2, 3, padding=1))
        else:
            raise ValueError(f"Resample2D mode must be downsample2d or upsample2d, got {mode!r}")

    def forward(self, x):
        return self.resample(x)


class MidBlock2D(nn.Module):
    def __init__(self, dim: int, dropout: float, act: str):
        super().__init__()
        self.attentions = nn.ModuleList([AttentionBlock2D(dim)])
        self.resnets = nn.ModuleList([ResidualBlock2D(dim, dim, dropout, act) for _ in range(2)])

    def forward(self, x):
        x = self.resnets[0](x)
        for attn, resnet in zip(self.attentions, self.resnets[1:]):
            x = resnet(attn(x))
        return x


class Encoder2D(nn.Module):
    def __init__(self, c: QwenVAE2DConfig):
        super().__init__()
        self.nonlinearity = _ACTIVATIONS[c.non_linearity]()
        dims = [c.base_dim * m for m in (1, *c.dim_mult)]
        self.conv_in = nn.Conv2d(3, dims[0], 3, padding=1)
        blocks, scale = [], 1.0
        for i, (d_in, d_out) in enumerate(itertools.pairwise(dims)):
            for _ in range(c.num_res_blocks):
                blocks.append(ResidualBlock2D(d_in, d_out, c.dropout, c.non_linearity))
                if scale in c.attn_scales:
                    blocks.append(AttentionBlock2D(d_out))
                d_in = d_out
            if i != len(c.dim_mult) - 1:
                blocks.append(Resample2D(d_out, "downsample2d"))
                scale /= 2.0
        self.down_blocks = nn.ModuleList(blocks)
        self.mid_block = MidBlock2D(dims[-1], c.dropout, c.non_linearity)
        self.norm_out = RMSNorm2D(dims[-1])
        self.conv_out = nn.Conv2d(dims[-1], 2 * c.z_dim, 3, padding=1)

    def forward(self, x):
        x = self.conv_in(x)
        for layer in self.down_blocks:
            x = layer(x)
        return self.conv_out(self.nonlinearity(self.norm_out(self.mid_block(x))))


class UpBlock2D(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, n: int, dropout: float, upsample: bool, act: str):
        super().__init__()
        self.resnets = nn.ModuleList(
            [ResidualBlock2D(in_dim if j == 0 else out_dim, out_dim, dropout, act) for j in range(n + 1)])
        self.upsamplers = nn.ModuleList([Resample2D(out_dim, "upsample2d")]) if upsample else None

    def forward(self, x):
        for resnet in self.resnets:
            x = resnet(x)
        return self.upsamplers[0](x) if self.upsamplers is not None else x


class Decoder2D(nn.Module):
    def __init__(self, c: QwenVAE2DConfig):
        super().__init__()
        self.nonlinearity = _ACTIVATIONS[c.non_linearity]()
        dims = [c.base_dim * m for m in (c.dim_mult[-1], *c.dim_mult[::-1])]
        self.conv_in = nn.Conv2d(c.z_dim, dims[0], 3, padding=1)
        self.mid_block = MidBlock2D(dims[0], c.dropout, c.non_linearity)
        last = len(c.dim_mult) - 1
        # after an up block its upsampler has halved the channels, hence in_dim // 2 from block 1 on
        self.up_blocks = nn.ModuleList([
            UpBlock2D(d_in // 2 if i > 0 else d_in, d_out, c.num_res_blocks, c.dropout, i != last, c.non_linearity)
            for i, (d_in, d_out) in enumerate(itertools.pairwise(dims))])
        self.norm_out = RMSNorm2D(dims[-1])
        self.conv_out = nn.Conv2d(dims[-1], 3, 3, padding=1)

    def forward(self, x):
        x = self.mid_block(self.conv_in(x))
        for block in self.up_blocks:
            x = block(x)
        return self.conv_out(self.nonlinearity(self.norm_out(x)))


class QwenImageVAE2D(nn.Module):
    """VOSR's 2D Qwen-Image VAE. ``config``: a :class:`QwenVAE2DConfig` or the folder's ``config.json``
    dict. Images N×3×H×W in [-1, 1] <-> latents N×``z_dim``×H/8×W/8 (the VAE's raw latent space;
    VOSR's DiT works on :meth:`normalize_latent` of it, see the module docstring)."""

    def __init__(self, config: QwenVAE2DConfig | dict | None = None):
        super().__init__()
        if not isinstance(config, QwenVAE2DConfig):
            config = QwenVAE2DConfig.from_dict(dict(config or {}))
        self.config = config
        self.z_dim = config.z_dim
        self.scale_factor = 2 ** (len(config.dim_mult) - 1)
        self.encoder = Encoder2D(config)
        self.quant_conv = nn.Conv2d(2 * config.z_dim, 2 * config.z_dim, 1)
        self.post_quant_conv = nn.Conv2d(config.z_dim, config.z_dim, 1)
        self.decoder = Decoder2D(config)

    def encode_moments(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: N×3×H×W in [-1, 1] -> (mean, logvar), each N×z_dim×⌊H/8⌋×⌊W/8⌋, logvar clamped to
        [-30, 20] (diffusers' DiagonalGaussianDistribution)."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"QwenImageVAE2D.encode expects N×3×H×W in [-1, 1], got shape {tuple(x.shape)}")
        mean, logvar = self.quant_conv(self.encoder(x)).chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def encode(self, x: torch.Tensor, generator=None, *, sample: bool = True) -> torch.Tensor:
        """x: N×3×H×W in [-1, 1] -> raw latent N×z_dim×H/8×W/8 (not normalised). ``sample`` (the
        official ``latent_dist.sample()``): mean + exp(logvar/2)·ε with ε from ``generator`` (one
        torch.Generator, a list of one per image, or None for the global RNG); a CPU generator with
        a CUDA input draws on the CPU and moves ε (as diffusers' ``randn_tensor``). Else the mean."""
        from models.sr.diffusion.base import randn

        mean, logvar = self.encode_moments(x)
        if not sample:
            return mean
        g0 = generator[0] if isinstance(generator, (list, tuple)) else generator
        where = g0.device if g0 is not None else mean.device
        eps = randn(mean.shape, generator, where, mean.dtype).to(mean.device)
        return mean + torch.exp(0.5 * logvar) * eps

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Raw latent N×z_dim×h×w -> image N×3×8h×8w clamped to [-1, 1]."""
        if z.ndim != 4 or z.shape[1] != self.z_dim:
            raise ValueError(f"QwenImageVAE2D.decode expects N×{self.z_dim}×h×w, got shape {tuple(z.shape)}")
        return self.decoder(self.post_quant_conv(z)).clamp(-1.0, 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction through the posterior mean (the official ``forward`` default)."""
        return self.decode(self.encode(x, sample=False))

    def latent_stats(self, device=None, dtype=None) -> tuple[torch.Tensor, torch.Tensor]:
        """(latents_mean, latents_std) of the config as 1×z_dim×1×1 tensors."""
        m = torch.tensor(self.config.latents_mean, device=device, dtype=dtype or torch.float32)
        s = torch.tensor(self.config.latents_std, device=device, dtype=dtype or torch.float32)
        return m.view(1, -1, 1, 1), s.view(1, -1, 1, 1)

    def normalize_latent(self, z: torch.Tensor) -> torch.Tensor:
        """VOSR's DiT input space: (z − latents_mean) / latents_std per channel."""
        m, s = self.latent_stats(z.device, torch.float32)
        return ((z.float() - m) / s).to(z.dtype)

    def denormalize_latent(self, zn: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`normalize_latent`: zn·latents_std + latents_mean."""
        m, s = self.latent_stats(zn.device, torch.float32)
        return (zn.float() * s + m).to(zn.dtype)


# -- loading ---------------------------------------------------------------------------------------
def find_qwen_vae2d(folder=None, allow_download: bool | None = None) -> Path:
    """The local ``Qwen-Image-vae-2d`` folder: ``folder`` itself when it holds ``config.json`` (or
    its ``Qwen-Image-vae-2d/`` subfolder: a copy of the whole preset/ckpts or HF repo), else the
    resolver's copy of CSWRY/VOSR (FolderMissingError naming the places and the fetch command)."""
    if folder is not None:
        p = Path(folder).expanduser()
        for cand in (p, p / SUBFOLDER):
            if (cand / "config.json").is_file():
                return cand
    return resolve_folder(QWEN_VAE2D, explicit=folder, allow_download=allow_download) / SUBFOLDER


def load_qwen_vae2d(folder=None, *, allow_download: bool | None = None, tiny: bool = False,
                    device=None, dtype=None) -> QwenImageVAE2D:
    """The VAE in eval mode without gradients, on ``device`` in ``dtype`` (default: CPU, float32).

    ``folder``: VOSR's ``Qwen-Image-vae-2d`` folder (``config.json`` + ``diffusion_pytorch_model
    .safetensors`` or ``.bin``), loaded strictly: a missing, unexpected or reshaped key is a
    CheckpointError naming the file and the keys. ``folder=None`` asks the resolver, unless ``tiny``:
    then the random :func:`tiny_config` VAE (seed 0, same weights every call). The file's path and
    sha256 are in ``vae.weights_info``.
    """
    if folder is None and tiny:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            vae = QwenImageVAE2D(tiny_config())
        vae.weights_info = {"qwen_vae2d": "tiny random"}
    else:
        from models.files import file_digest
        from models.sr.checkpoint import read_weights_file

        path = find_qwen_vae2d(folder, allow_download)
        cfg_path = path / "config.json"
        try:
            cfg = json.loads(cfg_path.read_text())
        except (OSError, ValueError) as e:
            raise CheckpointError(f"{cfg_path}: cannot read the VAE config ({type(e).__name__}: {e})") from None
        weights = next((path / n for n in WEIGHT_NAMES if (path / n).is_file()), None)
        if weights is None:
            raise CheckpointError(f"{path}: none of {', '.join(WEIGHT_NAMES)} found (expected VOSR's "
                                  f"{SUBFOLDER} folder)")
        vae = QwenImageVAE2D(QwenVAE2DConfig.from_dict(cfg, str(cfg_path)))
        sd = read_weights_file(weights)
        check_keys(vae.state_dict(), sd, f"{weights} does not fit the 2D Qwen-Image VAE ({cfg_path})",
                   f"Is it VOSR's {SUBFOLDER} folder (the 2D extraction, not Qwen-Image's 3D vae/)?")
        vae.load_state_dict(sd, strict=True)
        vae.weights_info = {"qwen_vae2d": str(weights), "qwen_vae2d_sha256": file_digest(weights)}
    vae.to(device=device, dtype=dtype)
    return vae.eval().requires_grad_(False)


def save_qwen_vae2d(vae: QwenImageVAE2D, folder: str | os.PathLike) -> Path:
    """Write ``vae`` in the official folder layout (``config.json`` with diffusers' ``_class_name``
    + ``diffusion_pytorch_model.safetensors``), e.g. to make a tiny VOSR preset. Returns the folder."""
    from safetensors.torch import save_file

    from models.files import atomic_path, write_json_atomic

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_json_atomic(folder / "config.json", {"_class_name": "AutoencoderKLQwenImage2D", **vae.config.to_dict()})
    sd = {k: v.detach().float().cpu().contiguous() for k, v in vae.state_dict().items()}
    with atomic_path(folder / WEIGHT_NAMES[0]) as tmp:
        save_file(sd, str(tmp))
    return folder
