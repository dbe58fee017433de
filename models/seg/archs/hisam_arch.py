"""Hi-SAM / SAM-TSS network: SAM's ViT image encoder with adapters, the self-prompting module, the
S-decoder (SAM's mask decoder plus a high-resolution stroke head) and Hi-SAM's H-decoder.

Hi-SAM: "Hi-SAM: Marrying Segment Anything Model for Hierarchical Text Segmentation", Ye et al.,
arXiv:2401.17904 (TPAMI 2024); official code https://github.com/ymy-k/Hi-SAM, Apache-2.0, itself
built on Segment Anything (https://github.com/facebookresearch/segment-anything, Apache-2.0, Meta).
Written here from a reading of ``hi_sam/modeling/{image_encoder,common,modal_aligner,prompt_encoder,
transformer,mask_decoder,hi_sam}.py``; module and parameter names follow the official ones so the
released checkpoints load by name (``image_encoder.*``, ``modal_aligner.*``, ``prompt_encoder.*``,
``mask_decoder.*``, ``hi_decoder.*``). The maths is the official one; attention runs through
``F.scaled_dot_product_attention`` (decomposed relative positions as its additive mask).

What differs from plain SAM (and why the ``segment-anything`` package cannot stand in): every ViT
block carries two adapters (``Space_Adapter`` after attention, ``MLP_Adapter`` beside the MLP, scaled
by 0.5); the prompt comes from the image itself (``ModalAligner``: 12 learned tokens); the mask
decoder has a second, 4x finer upscaling branch giving a mask at the input resolution (1024²).
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from models.layers import LayerNorm2d


@dataclass(frozen=True)
class HiSAMConfig:
    """Sizes of one Hi-SAM / SAM-TSS network (the official ``_build_sam`` values by default).

    img_size: square input side (SAM: 1024); patch_size: ViT patch (16); the image embedding is
    ``img_size // patch_size`` square (64). encoder_*: ViT width, depth, heads; global_attn_indexes:
    blocks with global attention, the others use ``window_size`` windows. prompt_dim: decoder width
    (256). decoder_mlp_dim / decoder_heads / decoder_depth: the two-way transformer (2048, 8, 2).
    iou_hidden: IoU head width (256). mask_in_chans: prompt encoder's mask branch (16; unused at
    inference but in the checkpoint). prompt_len / aligner_layers / aligner_heads: self-prompting
    module (12, 1, 8). word_mask_size: H-decoder word-mask grid (384, hard-coded upstream).
    hier: build the H-decoder (Hi-SAM) or not (SAM-TSS).
    """

    encoder_dim: int = 1024
    encoder_depth: int = 24
    encoder_heads: int = 16
    global_attn_indexes: tuple[int, ...] = (5, 11, 17, 23)
    img_size: int = 1024
    patch_size: int = 16
    window_size: int = 14
    prompt_dim: int = 256
    decoder_mlp_dim: int = 2048
    decoder_heads: int = 8
    decoder_depth: int = 2
    iou_hidden: int = 256
    mask_in_chans: int = 16
    prompt_len: int = 12
    aligner_layers: int = 1
    aligner_heads: int = 8
    word_mask_size: int = 384
    hier: bool = False

    @property
    def embed_size(self) -> int:
        return self.img_size // self.patch_size


# the official build_sam_vit_{b,l,h}
VIT_SIZES = {
    "vit_b": {"encoder_dim": 768, "encoder_depth": 12, "encoder_heads": 12, "global_attn_indexes": (2, 5, 8, 11)},
    "vit_l": {"encoder_dim": 1024, "encoder_depth": 24, "encoder_heads": 16, "global_attn_indexes": (5, 11, 17, 23)},
    "vit_h": {"encoder_dim": 1280, "encoder_depth": 32, "encoder_heads": 16, "global_attn_indexes": (7, 15, 23, 31)},
}

# the real structure at toy sizes: 128² input -> 8x8 embedding, windowed and global blocks (the
# 5-wide windows need padding, as 14 does on 64), decoder width 64 (so the /16 stroke head has 4)
TINY = {"encoder_dim": 32, "encoder_depth": 2, "encoder_heads": 2, "global_attn_indexes": (1,), "img_size": 128,
            "window_size": 5, "prompt_dim": 64, "decoder_mlp_dim": 128, "iou_hidden": 64, "mask_in_chans": 8,
            "word_mask_size": 48}


def hisam_config(model_type: str, hier: bool) -> HiSAMConfig:
    """Config of ``model_type`` (``vit_b`` | ``vit_l`` | ``vit_h`` | ``tiny``)."""
    sizes = TINY if model_type == "tiny" else VIT_SIZES[model_type]
    return HiSAMConfig(**sizes, hier=hier)


# -- shared pieces ---------------------------------------------------------------------------------

class MLPBlock(nn.Module):
    def __init__(self, dim: int, hidden: int, act=nn.GELU):
        super().__init__()
        self.lin1 = nn.Linear(dim, hidden)
        self.lin2 = nn.Linear(hidden, dim)
        self.act = act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin2(self.act(self.lin1(x)))


class MLP(nn.Module):
    """``num_layers`` linear layers with ReLU between them (the decoders' heads)."""

    def __init__(self, dim_in: int, hidden: int, dim_out: int, num_layers: int):
        super().__init__()
        dims = [dim_in] + [hidden] * (num_layers - 1) + [dim_out]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(dims))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


class Adapter(nn.Module):
    """Bottleneck adapter (ratio 0.25, GELU); ``skip`` adds the input back."""

    def __init__(self, dim: int, skip: bool = True):
        super().__init__()
        self.skip = skip
        self.D_fc1 = nn.Linear(dim, int(dim * 0.25))
        self.D_fc2 = nn.Linear(int(dim * 0.25), dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.D_fc2(F.gelu(self.D_fc1(x)))
        return x + y if self.skip else y


# -- image encoder (ViTDet-style, as in SAM, plus adapters) ----------------------------------------

def _rel_pos_table(size: int, table: torch.Tensor) -> torch.Tensor:
    """``(size, size, C)`` embeddings of the relative offsets ``q - k`` (query and key grids of the
    same ``size``, the only case here: windows and the padded full image)."""
    if table.shape[0] != 2 * size - 1:
        raise ValueError(f"relative position table has {table.shape[0]} rows, expected {2 * size - 1}")
    idx = torch.arange(size, device=table.device)
    return table[idx[:, None] - idx[None, :] + size - 1]


class EncoderAttention(nn.Module):
    def __init__(self, dim: int, heads: int, grid: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        self.rel_pos_h = nn.Parameter(torch.zeros(2 * grid - 1, dim // heads))
        self.rel_pos_w = nn.Parameter(torch.zeros(2 * grid - 1, dim // heads))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, _ = x.shape
        q, k, v = self.qkv(x).reshape(b, h * w, 3, self.heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        # decomposed relative positions (MViTv2): bias[q, k] = <q, Rh[qy-ky]> + <q, Rw[qx-kx]>,
        # computed from the unscaled queries
        rq = q.reshape(b, self.heads, h, w, -1)
        rel_h = torch.einsum("bnhwc,hkc->bnhwk", rq, _rel_pos_table(h, self.rel_pos_h).to(q.dtype))
        rel_w = torch.einsum("bnhwc,wkc->bnhwk", rq, _rel_pos_table(w, self.rel_pos_w).to(q.dtype))
        bias = (rel_h[..., :, None] + rel_w[..., None, :]).reshape(b, self.heads, h * w, h * w)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return self.proj(out.transpose(1, 2).reshape(b, h, w, -1))


def _windows(x: torch.Tensor, size: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """``(B, H, W, C)`` -> ``(B * nwin, size, size, C)``, zero-padded to multiples of ``size``."""
    b, h, w, c = x.shape
    ph, pw = (-h) % size, (-w) % size
    x = F.pad(x, (0, 0, 0, pw, 0, ph))
    hp, wp = h + ph, w + pw
    x = x.view(b, hp // size, size, wp // size, size, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, size, size, c), (hp, wp)


def _unwindows(x: torch.Tensor, size: int, padded: tuple[int, int], hw: tuple[int, int]) -> torch.Tensor:
    hp, wp = padded
    b = x.shape[0] // ((hp // size) * (wp // size))
    x = x.view(b, hp // size, wp // size, size, size, -1).permute(0, 1, 3, 2, 4, 5).reshape(b, hp, wp, -1)
    return x[:, :hw[0], :hw[1]]


class EncoderBlock(nn.Module):
    def __init__(self, dim: int, heads: int, window: int, grid: int):
        super().__init__()
        self.window = window
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = EncoderAttention(dim, heads, window if window else grid)
        self.Space_Adapter = Adapter(dim)
        self.MLP_Adapter = Adapter(dim, skip=False)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = MLPBlock(dim, dim * 4)
        self.adapter_scale = 0.5  # the official Block's ``scale``

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm1(x)
        if self.window:
            hw = y.shape[1:3]
            y, padded = _windows(y, self.window)
        y = self.Space_Adapter(self.attn(y))
        if self.window:
            y = _unwindows(y, self.window, padded, hw)
        x = x + y
        y = self.norm2(x)
        return x + self.mlp(y) + self.adapter_scale * self.MLP_Adapter(y)


class PatchEmbed(nn.Module):
    def __init__(self, patch: int, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=patch, stride=patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).permute(0, 2, 3, 1)


class ImageEncoderViT(nn.Module):
    """``(B, 3, S, S)`` normalised images -> ``(B, prompt_dim, S/16, S/16)`` embeddings."""

    def __init__(self, cfg: HiSAMConfig):
        super().__init__()
        self.img_size = cfg.img_size
        g = cfg.embed_size
        self.patch_embed = PatchEmbed(cfg.patch_size, cfg.encoder_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, g, g, cfg.encoder_dim))
        self.blocks = nn.ModuleList(
            EncoderBlock(cfg.encoder_dim, cfg.encoder_heads,
                         0 if i in cfg.global_attn_indexes else cfg.window_size, g)
            for i in range(cfg.encoder_depth))
        d = cfg.prompt_dim
        self.neck = nn.Sequential(nn.Conv2d(cfg.encoder_dim, d, 1, bias=False), LayerNorm2d(d),
                                  nn.Conv2d(d, d, 3, padding=1, bias=False), LayerNorm2d(d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x) + self.pos_embed
        for blk in self.blocks:
            x = blk(x)
        return self.neck(x.permute(0, 3, 1, 2))


# -- self-prompting module -------------------------------------------------------------------------

class AlignerLayer(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        # dropout 0.1 upstream; inference only here, so none
        self.self_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm1 = nn.LayerNorm(dim)
        self.cross_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, dim * 4), nn.GELU(), nn.Linear(dim * 4, dim))

    def forward(self, tokens: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        tokens = self.norm1(tokens + self.self_attn(tokens, tokens, tokens, need_weights=False)[0])
        tokens = tokens + self.cross_attn(tokens, image, image, need_weights=False)[0]
        return tokens + self.ffn(self.norm2(tokens))


class ModalAligner(nn.Module):
    """Image embeddings ``(B, C, h, w)`` -> ``prompt_len`` sparse prompt tokens ``(B, L, C)``: each
    token is the image features pooled under its own sigmoid attention map, then refined by
    self-attention and cross-attention to the image."""

    def __init__(self, dim: int, prompt_len: int, layers: int, heads: int):
        super().__init__()
        self.prompt_len = prompt_len
        L = prompt_len
        self.conv = nn.Sequential(nn.Conv2d(dim, L, 3, padding=1, bias=False), nn.GELU(),
                                  nn.Conv2d(L, L, 3, padding=1, bias=False), nn.GELU(),
                                  nn.Conv2d(L, L, 3, padding=1, bias=False), nn.GELU(),
                                  nn.Conv2d(L, L, 3, padding=1, bias=False))
        self.transformer_layers = nn.ModuleList(AlignerLayer(dim, heads) for _ in range(layers))

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        b, c = emb.shape[:2]
        attn = torch.sigmoid(self.conv(emb).reshape(b, self.prompt_len, -1))  # (B, L, hw)
        feat = emb.reshape(b, c, -1).transpose(1, 2)  # (B, hw, C)
        tokens = attn @ feat / feat.shape[1]  # mean over hw of attn * feat
        for layer in self.transformer_layers:
            tokens = layer(tokens, feat)
        return tokens


# -- prompt encoder (only its positional encoding and point embeddings are used) --------------------

class PositionEmbeddingRandom(nn.Module):
    def __init__(self, num_feats: int):
        super().__init__()
        self.register_buffer("positional_encoding_gaussian_matrix", torch.randn(2, num_feats))

    def encode(self, xy01: torch.Tensor) -> torch.Tensor:
        """``(..., 2)`` x/y in [0, 1] -> ``(..., 2 * num_feats)`` random Fourier features."""
        p = 2 * math.pi * ((2 * xy01 - 1) @ self.positional_encoding_gaussian_matrix)
        return torch.cat([torch.sin(p), torch.cos(p)], dim=-1)

    def grid(self, size: int) -> torch.Tensor:
        """``(C, size, size)`` encoding of the pixel centres of a square grid."""
        c = (torch.arange(size, device=self.positional_encoding_gaussian_matrix.device,
                          dtype=torch.float32) + 0.5) / size
        xy = torch.stack([c[None, :].expand(size, size), c[:, None].expand(size, size)], dim=-1)
        return self.encode(xy).permute(2, 0, 1)


class PromptEncoder(nn.Module):
    def __init__(self, cfg: HiSAMConfig):
        super().__init__()
        d, m = cfg.prompt_dim, cfg.mask_in_chans
        self.embed_size = cfg.embed_size
        self.img_size = cfg.img_size
        self.pe_layer = PositionEmbeddingRandom(d // 2)
        self.point_embeddings = nn.ModuleList(nn.Embedding(1, d) for _ in range(4))
        self.not_a_point_embed = nn.Embedding(1, d)
        # SAM's mask-prompt branch: Hi-SAM never feeds a mask, but the weights are in the files
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, m // 4, 2, stride=2), LayerNorm2d(m // 4), nn.GELU(),
            nn.Conv2d(m // 4, m, 2, stride=2), LayerNorm2d(m), nn.GELU(), nn.Conv2d(m, d, 1))
        self.no_mask_embed = nn.Embedding(1, d)

    def dense_pe(self) -> torch.Tensor:
        """``(1, C, g, g)`` positional encoding of the image embedding grid."""
        return self.pe_layer.grid(self.embed_size)[None]

    def embed_points(self, xy: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Points ``(N, K, 2)`` in input-frame pixels (x, y), labels ``(N, K)`` (1 fg, 0 bg) ->
        ``(N, K + 1, C)``: SAM appends one padding point when no box is given."""
        n = xy.shape[0]
        xy = torch.cat([xy + 0.5, xy.new_zeros(n, 1, 2)], dim=1)
        labels = torch.cat([labels, labels.new_full((n, 1), -1)], dim=1)
        emb = self.pe_layer.encode(xy / self.img_size)
        emb = torch.where((labels == -1)[..., None], self.not_a_point_embed.weight, emb)
        emb = emb + (labels == 0)[..., None] * self.point_embeddings[0].weight
        return emb + (labels == 1)[..., None] * self.point_embeddings[1].weight


# -- two-way transformer (SAM's mask decoder body) -------------------------------------------------

class DecoderAttention(nn.Module):
    def __init__(self, dim: int, heads: int, downsample: int = 1):
        super().__init__()
        inner = dim // downsample
        self.heads = heads
        self.q_proj = nn.Linear(dim, inner)
        self.k_proj = nn.Linear(dim, inner)
        self.v_proj = nn.Linear(dim, inner)
        self.out_proj = nn.Linear(inner, dim)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        def split(t):
            return t.reshape(t.shape[0], t.shape[1], self.heads, -1).transpose(1, 2)

        out = F.scaled_dot_product_attention(split(self.q_proj(q)), split(self.k_proj(k)), split(self.v_proj(v)))
        return self.out_proj(out.transpose(1, 2).reshape(q.shape[0], q.shape[1], -1))


class TwoWayBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_dim: int, skip_first_pe: bool):
        super().__init__()
        self.self_attn = DecoderAttention(dim, heads)
        self.norm1 = nn.LayerNorm(dim)
        self.cross_attn_token_to_image = DecoderAttention(dim, heads, 2)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLPBlock(dim, mlp_dim, act=nn.ReLU)
        self.norm3 = nn.LayerNorm(dim)
        self.norm4 = nn.LayerNorm(dim)
        self.cross_attn_image_to_token = DecoderAttention(dim, heads, 2)
        self.skip_first_pe = skip_first_pe

    def forward(self, queries, keys, query_pe, key_pe):
        if self.skip_first_pe:
            queries = self.self_attn(queries, queries, queries)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q, q, queries)
        queries = self.norm1(queries)
        q, k = queries + query_pe, keys + key_pe
        queries = self.norm2(queries + self.cross_attn_token_to_image(q, k, keys))
        queries = self.norm3(queries + self.mlp(queries))
        q = queries + query_pe
        keys = self.norm4(keys + self.cross_attn_image_to_token(k, q, queries))
        return queries, keys


class TwoWayTransformer(nn.Module):
    def __init__(self, depth: int, dim: int, heads: int, mlp_dim: int):
        super().__init__()
        self.layers = nn.ModuleList(TwoWayBlock(dim, heads, mlp_dim, i == 0) for i in range(depth))
        self.final_attn_token_to_image = DecoderAttention(dim, heads, 2)
        self.norm_final_attn = nn.LayerNorm(dim)

    def forward(self, image: torch.Tensor, image_pe: torch.Tensor, tokens: torch.Tensor):
        """image ``(B, C, h, w)``, image_pe ``(B, C, h, w)``, tokens ``(B, N, C)`` ->
        (tokens ``(B, N, C)``, image ``(B, hw, C)``)."""
        keys = image.flatten(2).transpose(1, 2)
        key_pe = image_pe.flatten(2).transpose(1, 2)
        queries = tokens
        for layer in self.layers:
            queries, keys = layer(queries, keys, tokens, key_pe)
        attn = self.final_attn_token_to_image(queries + tokens, keys + key_pe, keys)
        return self.norm_final_attn(queries + attn), keys


def _conv_stack(c: int, n: int) -> list[nn.Module]:
    """``n`` 3x3 convs, each followed by LayerNorm2d + GELU except the last (GELU only)."""
    out: list[nn.Module] = []
    for i in range(n):
        out += [nn.Conv2d(c, c, 3, padding=1)] + ([LayerNorm2d(c)] if i < n - 1 else []) + [nn.GELU()]
    return out


class _SAMDecoderBody(nn.Module):
    """What the S- and H-decoders share with SAM's mask decoder: output tokens, the two-way
    transformer, the 4x upscaling, one hypernetwork MLP per mask token and the IoU head."""

    def __init__(self, cfg: HiSAMConfig):
        super().__init__()
        d = cfg.prompt_dim
        self.num_mask_tokens = 4
        self.transformer = TwoWayTransformer(cfg.decoder_depth, d, cfg.decoder_heads, cfg.decoder_mlp_dim)
        self.iou_token = nn.Embedding(1, d)
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, d)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(d, d // 4, 2, stride=2), LayerNorm2d(d // 4), nn.GELU(),
            nn.ConvTranspose2d(d // 4, d // 8, 2, stride=2), nn.GELU())
        self.output_hypernetworks_mlps = nn.ModuleList(MLP(d, d, d // 8, 3) for _ in range(self.num_mask_tokens))
        self.iou_prediction_head = MLP(d, cfg.iou_hidden, self.num_mask_tokens, 3)

    def _body(self, image: torch.Tensor, image_pe: torch.Tensor, prompts: torch.Tensor):
        """image ``(B, C, g, g)``, image_pe ``(1, C, g, g)``, prompts ``(B, N, C)`` -> (iou/mask
        token outputs ``(B, 5, C)``, upscaled embedding ``(B, C/8, 4g, 4g)``, low-res masks
        ``(B, 4, 4g, 4g)`` logits)."""
        b = prompts.shape[0]
        out_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight]).to(prompts.dtype)
        tokens = torch.cat([out_tokens[None].expand(b, -1, -1), prompts], dim=1)
        hs, src = self.transformer(image, image_pe.expand(b, -1, -1, -1), tokens)
        src = src.transpose(1, 2).reshape(image.shape)
        up = self.output_upscaling(src)
        hyper = torch.stack([mlp(hs[:, 1 + i]) for i, mlp in enumerate(self.output_hypernetworks_mlps)], 1)
        masks = (hyper @ up.flatten(2)).reshape(b, -1, *up.shape[-2:])
        return hs[:, :1 + self.num_mask_tokens], up, masks


class MaskDecoder(_SAMDecoderBody):
    """S-decoder: SAM's mask decoder plus Hi-SAM's high-resolution stroke head (4x finer again)."""

    def __init__(self, cfg: HiSAMConfig):
        super().__init__(cfg)
        d = cfg.prompt_dim
        self.output_upscaling_hr = nn.Sequential(
            nn.ConvTranspose2d(d // 8, d // 16, 2, stride=2), LayerNorm2d(d // 16), nn.GELU(),
            nn.ConvTranspose2d(d // 16, d // 16, 2, stride=2), LayerNorm2d(d // 16), nn.GELU(),
            *_conv_stack(d // 16, 4))
        self.output_hypernetworks_mlps_hr = MLP(d, d, d // 16, 3)
        self.iou_prediction_head_hr = MLP(d, cfg.iou_hidden, 1, 3)

    def forward(self, image, image_pe, prompts):
        """-> (low-res mask ``(B, 1, 4g, 4g)``, stroke mask ``(B, 1, 16g, 16g)`` logits, IoU
        ``(B, 1)``, stroke IoU ``(B, 1)``): the single-mask output (``multimask_output=False``)."""
        hs, up, masks = self._body(image, image_pe, prompts)
        up_hr = self.output_upscaling_hr(up)
        hyper_hr = self.output_hypernetworks_mlps_hr(hs[:, 1])
        hr = (hyper_hr[:, None] @ up_hr.flatten(2)).reshape(up_hr.shape[0], 1, *up_hr.shape[-2:])
        return masks[:, :1], hr, self.iou_prediction_head(hs[:, 0])[:, :1], self.iou_prediction_head_hr(hs[:, 0])


class HiDecoder(_SAMDecoderBody):
    """H-decoder: point prompt -> line and paragraph masks (SAM's mask tokens 2 and 3) and a word
    mask from a refined ``word_mask_size`` grid (mask token 1)."""

    def __init__(self, cfg: HiSAMConfig):
        super().__init__(cfg)
        d = cfg.prompt_dim
        self.word_mask_size = cfg.word_mask_size
        self.word_mask_dc = nn.Sequential(nn.Conv2d(d // 8, d // 16, 1), LayerNorm2d(d // 16), nn.GELU())
        self.word_mask_refine = nn.Sequential(*_conv_stack(d // 16, 4))
        self.output_word_mlp = MLP(d, d, d // 16, 3)

    def forward(self, image, image_pe, prompts):
        """image ``(N, C, g, g)`` (one image repeated per point), prompts ``(N, 2, C)`` -> (masks
        ``(N, 3, 4g, 4g)`` logits of tokens 1..3 = word-ish, line, paragraph; IoU ``(N, 3)``; word
        mask ``(N, 1, S, S)`` logits, S = word_mask_size)."""
        hs, up, masks = self._body(image, image_pe, prompts)
        w = self.word_mask_dc(up)
        w = F.interpolate(w, (self.word_mask_size,) * 2, mode="bilinear", align_corners=False)
        w = self.word_mask_refine(w)
        hyper = self.output_word_mlp(hs[:, 2:3])
        word = (hyper @ w.flatten(2)).reshape(w.shape[0], 1, *w.shape[-2:])
        return masks[:, 1:], self.iou_prediction_head(hs[:, 0])[:, 1:], word


class HiSAM(nn.Module):
    """The whole network; :meth:`stroke_logits` is SAM-TSS / Hi-SAM's text stroke segmentation."""

    def __init__(self, cfg: HiSAMConfig):
        super().__init__()
        self.cfg = cfg
        self.image_encoder = ImageEncoderViT(cfg)
        self.modal_aligner = ModalAligner(cfg.prompt_dim, cfg.prompt_len, cfg.aligner_layers, cfg.aligner_heads)
        self.prompt_encoder = PromptEncoder(cfg)
        self.mask_decoder = MaskDecoder(cfg)
        self.hi_decoder = HiDecoder(cfg) if cfg.hier else None

    def stroke_logits(self, emb: torch.Tensor) -> torch.Tensor:
        """Image embeddings ``(B, C, g, g)`` -> stroke logits ``(B, 1, S, S)`` in the padded input
        frame (S = img_size); > 0 is text."""
        prompts = self.modal_aligner(emb)
        return self.mask_decoder(emb, self.prompt_encoder.dense_pe().to(emb.dtype), prompts)[1]

    def hier_logits(self, emb: torch.Tensor, xy: torch.Tensor):
        """One image's embedding ``(1, C, g, g)`` and ``(N, 2)`` foreground points (input-frame
        pixels) -> (line/paragraph logits ``(N, 2, 4g, 4g)``, their IoU ``(N, 2)``, word logits
        ``(N, 1, S', S')``)."""
        if self.hi_decoder is None:
            raise ValueError("this network has no H-decoder (built with hier=False)")
        n = xy.shape[0]
        prompts = self.prompt_encoder.embed_points(xy[:, None].float(), xy.new_ones(n, 1)).to(emb.dtype)
        masks, iou, word = self.hi_decoder(emb.expand(n, -1, -1, -1), self.prompt_encoder.dense_pe().to(emb.dtype),
                                           prompts)
        return masks[:, 1:], iou[:, 1:], word
