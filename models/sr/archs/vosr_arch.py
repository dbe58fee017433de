"""VOSR's networks (Wu et al., "VOSR: A Vision-Only Generative Model for Image Super-Resolution",
CVPR 2026; github.com/cswry/VOSR, Apache-2.0): the LightningDiT velocity network of
``models/lightningdit.py`` (with the RoPE, RMSNorm and SwiGLU pieces of ``pos_embed.py``,
``rmsnorm.py``, ``swiglu_ffn.py``) and the half-width SD-2 VAE decoder of ``models/light_decoder.py``.
nn.Modules only; loading and sampling live in ``models.sr.vosr``.

Parameter names are the official ones, so an official ``state_dict`` loads with every key placed:
``x_embedder.proj``, ``t_embedder.mlp.{0,2}``, ``r_embedder.mlp.{0,2}`` (one-step models only),
``feat_rope.freqs_{cos,sin}`` (persistent buffers), ``t_block.1``,
``blocks.<i>.{norm1, attn.{qkv, q_norm, k_norm, proj}, cross_attn.{q_linear, k_linear, v_linear,
q_norm, k_norm, proj}, norm2, mlp.{w12, w3} | mlp.{fc1, fc2}, scale_shift_table}``,
``final_layer.{norm_final, linear, adaLN_modulation.1}``, ``layer_norm``, ``mlp_ca.{fc1, fc2}``.

Shapes: ``LightningDiT.forward(x N×2C×h×w, t N (float in [0, 1]), r N or None, z N×L×enc_dim)``
-> N×C×h×w velocity (h, w multiples of ``patch_size``). The official ``forward_flexible`` asserts a
square input; here the RoPE table is built per axis, so h ≠ w works (for h = w, and for the
training grid, the tables are the official ones exactly).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class RMSNorm(nn.Module):
    """LLaMA's RMSNorm (computed in float32, cast back), learnable ``weight``, eps 1e-6."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).type_as(x) * self.weight


class SwiGLUFFN(nn.Module):
    """silu(x W1) ⊙ (x W2) -> W3, with W1|W2 fused in ``w12``."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.w12 = nn.Linear(dim, 2 * hidden)
        self.w3 = nn.Linear(hidden, dim)

    def forward(self, x):
        a, b = self.w12(x).chunk(2, dim=-1)
        return self.w3(F.silu(a) * b)


class Mlp(nn.Module):
    """timm's ``Mlp`` (fc1 -> GELU(tanh) -> fc2), the names its state dict uses."""

    def __init__(self, dim: int, hidden: int, out: int | None = None):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, out or dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class PatchEmbed(nn.Module):
    """timm's ``PatchEmbed`` with ``strict_img_size=False``: conv p×p stride p, flattened to N×T×D."""

    def __init__(self, patch: int, in_ch: int, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(in_ch, dim, patch, stride=patch)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


def rope_tables(half_dim: int, gh: int, gw: int, pt_seq_len: int, device=None):
    """EVA's 2-D RoPE (``VisionRotaryEmbeddingFast``, 'lang' frequencies, θ = 10000) for a gh×gw
    token grid: positions along each axis are scaled to the training grid (i·pt_seq_len/g), each
    frequency repeated twice (interleaved pairs), row then column halves -> (cos, sin), (gh·gw)×2·half_dim."""
    freqs = 1.0 / (10000 ** (torch.arange(0, half_dim, 2, device=device)[: half_dim // 2].float() / half_dim))

    def axis(g):
        t = torch.arange(g, device=device).float() / g * pt_seq_len
        return torch.einsum("i,f->if", t, freqs).repeat_interleave(2, dim=-1)

    fr, fc = axis(gh), axis(gw)
    grid = torch.cat([fr[:, None, :].expand(gh, gw, -1), fc[None, :, :].expand(gh, gw, -1)], dim=-1)
    grid = grid.reshape(gh * gw, -1)
    return grid.cos(), grid.sin()


def rotate_half(x):
    """(x0, x1, x2, x3, …) -> (−x1, x0, −x3, x2, …)."""
    x = x.unflatten(-1, (-1, 2))
    return torch.stack((-x[..., 1], x[..., 0]), dim=-1).flatten(-2)


class FeatRope(nn.Module):
    """Holds the training grid's tables as the official persistent buffers ``freqs_cos``/``freqs_sin``."""

    def __init__(self, half_dim: int, pt_seq_len: int):
        super().__init__()
        self.half_dim, self.pt_seq_len = half_dim, pt_seq_len
        cos, sin = rope_tables(half_dim, pt_seq_len, pt_seq_len, pt_seq_len)
        self.register_buffer("freqs_cos", cos)
        self.register_buffer("freqs_sin", sin)

    def tables(self, gh: int, gw: int, dtype):
        if gh == gw == self.pt_seq_len:
            cos, sin = self.freqs_cos, self.freqs_sin
        else:  # the official _get_dynamic_rope (per axis here)
            cos, sin = rope_tables(self.half_dim, gh, gw, self.pt_seq_len, device=self.freqs_cos.device)
        return cos.to(dtype), sin.to(dtype)


def apply_rope(x, rope):
    cos, sin = rope
    return x * cos + rotate_half(x) * sin


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, qk_norm: bool, rmsnorm: bool):
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.qkv = nn.Linear(dim, 3 * dim)
        norm = RMSNorm if rmsnorm else nn.LayerNorm
        self.q_norm = norm(self.head_dim) if qk_norm else nn.Identity()
        self.k_norm = norm(self.head_dim) if qk_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, rope=None):
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        if rope is not None:
            q, k = apply_rope(q, rope), apply_rope(k, rope)
        y = F.scaled_dot_product_attention(q, k, v)
        return self.proj(y.transpose(1, 2).reshape(b, n, c))


class CrossAttention(nn.Module):
    """Image tokens attend to the DINOv2 tokens (no RoPE); q/k RMSNorm when ``qk_norm``."""

    def __init__(self, dim: int, heads: int, qk_norm: bool):
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.q_linear = nn.Linear(dim, dim)
        self.k_linear = nn.Linear(dim, dim)
        self.v_linear = nn.Linear(dim, dim)
        self.q_norm = RMSNorm(self.head_dim) if qk_norm else nn.Identity()
        self.k_norm = RMSNorm(self.head_dim) if qk_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, cond):
        b, n, c = x.shape
        m = cond.shape[1]
        q = self.q_linear(x).view(b, n, self.heads, self.head_dim).transpose(1, 2)
        k = self.k_linear(cond).view(b, m, self.heads, self.head_dim).transpose(1, 2)
        v = self.v_linear(cond).view(b, m, self.heads, self.head_dim).transpose(1, 2)
        y = F.scaled_dot_product_attention(self.q_norm(q), self.k_norm(k), v)
        return self.proj(y.transpose(1, 2).reshape(b, n, c))


class Block(nn.Module):
    """Self-attention (RoPE), cross-attention to the condition tokens (not modulated, no norm), MLP;
    adaLN-single modulation: a learned ``scale_shift_table`` plus the shared ``t_block`` output."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, qk_norm: bool, swiglu: bool, rmsnorm: bool,
                 cross: bool):
        super().__init__()
        norm = (lambda: RMSNorm(dim)) if rmsnorm else (lambda: nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6))
        self.norm1, self.norm2 = norm(), norm()
        self.attn = Attention(dim, heads, qk_norm, rmsnorm)
        hidden = int(dim * mlp_ratio)
        # the official int(2/3 · hidden): 2730 for the 0.5B's 1024, 4096 for the 1.4B's 1536
        self.mlp = SwiGLUFFN(dim, int(2 / 3 * hidden)) if swiglu else Mlp(dim, hidden)
        self.scale_shift_table = nn.Parameter(torch.randn(6, dim) / dim ** 0.5)
        self.cross_attn = CrossAttention(dim, heads, qk_norm) if cross else None

    def forward(self, x, c6, z=None, rope=None):
        b = x.shape[0]
        sh1, sc1, g1, sh2, sc2, g2 = (self.scale_shift_table[None] + c6.reshape(b, 6, -1)).chunk(6, dim=1)
        x = x + g1 * self.attn(self.norm1(x) * (1 + sc1) + sh1, rope)
        if self.cross_attn is not None:
            x = x + self.cross_attn(x, z)
        return x + g2 * self.mlp(self.norm2(x) * (1 + sc2) + sh2)


class TimestepEmbedder(nn.Module):
    """DiT's sinusoidal embedding (cos | sin, 256 frequencies, max period 10⁴) of t as given (VOSR
    feeds t ∈ [0, 1] unscaled) -> MLP."""

    def __init__(self, dim: int, freq_dim: int = 256):
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t):
        half = self.freq_dim // 2
        freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
        args = t[:, None].float() * freqs[None]
        emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
        return self.mlp(emb.to(self.mlp[0].weight.dtype))


class FinalLayer(nn.Module):
    def __init__(self, dim: int, patch: int, out_ch: int, rmsnorm: bool):
        super().__init__()
        self.norm_final = RMSNorm(dim) if rmsnorm else nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(dim, patch * patch * out_ch)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))

    def forward(self, x, c):
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        return self.linear(self.norm_final(x) * (1 + scale[:, None]) + shift[:, None])


class LightningDiT(nn.Module):
    """VOSR's velocity network. Constructor arguments as the official ``LightningDiT`` (what the
    inference scripts pass from ``args.json``): input_size (= resolution // 8), patch_size,
    in_channels (2× latent channels: LR latent ‖ noisy latent), out_channels, hidden_size, depth,
    num_heads, mlp_ratio, use_qknorm, use_swiglu, use_rope, use_rmsnorm, z_dims (DINOv2 width, or
    None: no cross-attention), encdim_ratio (``mlp_ca`` hidden = hidden_size·encdim_ratio),
    auxiliary_time_cond (the one-step models' ``r_embedder``)."""

    def __init__(self, input_size: int = 64, patch_size: int = 2, in_channels: int = 8, out_channels: int = 4,
                 hidden_size: int = 1024, depth: int = 28, num_heads: int = 16, mlp_ratio: float = 4.0,
                 use_qknorm: bool = True, use_swiglu: bool = True, use_rope: bool = True, use_rmsnorm: bool = True,
                 z_dims: int | None = 768, encdim_ratio: int = 3, auxiliary_time_cond: bool = False):
        super().__init__()
        self.patch_size, self.out_channels, self.in_channels = patch_size, out_channels, in_channels
        self.x_embedder = PatchEmbed(patch_size, in_channels, hidden_size)
        self.t_embedder = TimestepEmbedder(hidden_size)
        self.r_embedder = TimestepEmbedder(hidden_size) if auxiliary_time_cond else None
        self.feat_rope = FeatRope(hidden_size // num_heads // 2, input_size // patch_size) if use_rope else None
        self.t_block = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 6 * hidden_size))
        self.blocks = nn.ModuleList([
            Block(hidden_size, num_heads, mlp_ratio, use_qknorm, use_swiglu, use_rmsnorm, z_dims is not None)
            for _ in range(depth)])
        self.final_layer = FinalLayer(hidden_size, patch_size, out_channels, use_rmsnorm)
        self.z_dims = z_dims
        if z_dims is not None:
            self.layer_norm = nn.LayerNorm(z_dims)
            self.mlp_ca = Mlp(z_dims, hidden_size * encdim_ratio, hidden_size)

    def forward(self, x, t, r=None, z=None):
        n, _, h, w = x.shape
        p = self.patch_size
        if h % p or w % p:
            raise ValueError(f"LightningDiT: input {h}×{w} is not a multiple of the patch size {p}")
        gh, gw = h // p, w // p
        tok = self.x_embedder(x)
        c = self.t_embedder(t)
        if self.r_embedder is not None:
            # the shortcut endpoint enters scaled by the step length t − r
            c = c + self.r_embedder(r) * (t - r).unsqueeze(-1).to(c.dtype)
        c6 = self.t_block(c)
        if self.z_dims is not None:
            if z is None:
                raise ValueError("LightningDiT: this network is conditioned (z_dims set) but got z=None")
            z = self.mlp_ca(self.layer_norm(z))
        rope = self.feat_rope.tables(gh, gw, tok.dtype) if self.feat_rope is not None else None
        for blk in self.blocks:
            tok = blk(tok, c6, z, rope)
        out = self.final_layer(tok, c)
        out = out.reshape(n, gh, gw, p, p, self.out_channels)
        return torch.einsum("nhwpqc->nchpwq", out).reshape(n, self.out_channels, gh * p, gw * p)


class LightDecoder(nn.Module):
    """The SD-2 VAE decoder at half width (``sd21_lwdecoder.pth``): conv_in -> mid block (2 resnets +
    single-head attention) -> up blocks (``layers_per_block`` + 1 resnets each, ×2 upsampling but the
    last) -> GroupNorm, SiLU, conv_out. Latent N×4×h×w (unscaled) -> image N×3×8h×8w in about [-1, 1].
    Built from diffusers' ``UNetMidBlock2D``/``UpDecoderBlock2D`` as the official module is."""

    def __init__(self, in_channels: int = 4, out_channels: int = 3, block_out_channels=(64, 128, 256, 256),
                 layers_per_block: int = 2, norm_num_groups: int = 32):
        super().__init__()
        from diffusers.models.unets.unet_2d_blocks import UNetMidBlock2D, UpDecoderBlock2D

        rev = list(reversed(block_out_channels))
        self.conv_in = nn.Conv2d(in_channels, rev[0], 3, padding=1)
        self.mid_block = UNetMidBlock2D(in_channels=rev[0], temb_channels=None, resnet_eps=1e-6,
                                        resnet_act_fn="silu", resnet_groups=norm_num_groups,
                                        add_attention=True, attention_head_dim=rev[0])
        self.up_blocks = nn.ModuleList()
        prev = rev[0]
        for i, ch in enumerate(rev):
            self.up_blocks.append(UpDecoderBlock2D(in_channels=prev, out_channels=ch, num_layers=layers_per_block + 1,
                                                   resnet_eps=1e-6, resnet_act_fn="silu", resnet_groups=norm_num_groups,
                                                   add_upsample=i < len(rev) - 1))
            prev = ch
        self.conv_norm_out = nn.GroupNorm(norm_num_groups, block_out_channels[0], eps=1e-6)
        self.conv_out = nn.Conv2d(block_out_channels[0], out_channels, 3, padding=1)

    def forward(self, z):
        h = self.mid_block(self.conv_in(z))
        for up in self.up_blocks:
            h = up(h)
        return self.conv_out(F.silu(self.conv_norm_out(h)))
