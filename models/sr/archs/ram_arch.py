"""The Recognize Anything Model (RAM) tagger network, and DAPE's LoRA on it.

Papers: Y. Zhang, X. Huang et al., "Recognize Anything: A Strong Image Tagging Model" (2023);
DAPE: R. Wu et al., "SeeSR: Towards Semantics-Aware Real-World Image Super-Resolution" (CVPR 2024).
Original code: github.com/xinyu1205/recognize-anything (``ram/models/ram.py``, ``swin_transformer.py``,
``bert.py``; Apache-2.0, its Swin part from Microsoft's Swin Transformer (MIT) and its BERT part from
Salesforce BLIP (BSD-3-Clause)), and the LoRA copy in github.com/cswry/SeeSR and github.com/cswry/OSEDiff
(``ram/models/ram_lora.py``, ``swin_transformer_lora.py``, ``bert_lora.py``; Apache-2.0).

Our own implementation of the parts RAM's tagger runs, written from that code. Its ``state_dict()`` has the
official key names, so the published ``ram_swin_large_14m.pth`` loads strictly once the parts RAM's tagging
never runs are set aside (see ``models.sr.diffusion.ram``):

- ``visual_encoder``: Swin-L (patch 4, embed 192, depths 2/2/18/2, heads 6/12/24/48, window 12, 384 px;
  no absolute position embedding, no classification head). Its output is the average-pooled token followed
  by the 144 tokens of the last stage: N x 145 x 1536.
- ``image_proj``: Linear(1536 -> 512): the "image embedding" N x 145 x 512 SeeSR feeds its UNet.
- ``label_embed`` (classes x 512), ``wordvec_proj`` Linear(512 -> 768) + ReLU: one query per tag.
- ``tagging_head``: the two-layer BERT (hidden 768, 4 heads, intermediate 3072, GELU, LayerNorm eps 1e-12)
  built from ``q2l_config.json`` whose embeddings and self-attention RAM deletes ("del_selfattention"):
  each layer is cross-attention from the tag queries to the image embedding, then the feed-forward block.
- ``fc``: Linear(768 -> 1): one logit per tag.

DAPE's LoRA (loralib, rank 8, alpha 1, so scale 1/8): ``visual_encoder...attn.qkv`` is a ``MergedLinear``
with LoRA on the query and value thirds (``lora_A`` 16 x dim, ``lora_B`` 2·dim x 8, one rank-8 pair per
enabled third); the tagging head's cross-attention ``query`` and ``key`` are ``lora.Linear``s
(``lora_A`` 8 x in, ``lora_B`` out x 8). ``lora_rank=0`` builds plain RAM.

Relative position index and shifted-window masks are computed here and are not part of the state dict
(the official loader deletes them from checkpoints too).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class RAMConfig:
    """RAM's sizes; the defaults are ``ram_swin_large_14m`` (``config_swinL_384.json`` + ``q2l_config.json``).

    embed_width: the image embedding's width (``image_proj`` output, the head's ``encoder_width``).
    lora_rank:   0 = plain RAM; 8 = DAPE's LoRA modules (parameters ``lora_A``/``lora_B``).
    """

    image_size: int = 384
    patch_size: int = 4
    embed_dim: int = 192
    depths: tuple[int, ...] = (2, 2, 18, 2)
    num_heads: tuple[int, ...] = (6, 12, 24, 48)
    window_size: int = 12
    mlp_ratio: float = 4.0
    embed_width: int = 512
    head_hidden: int = 768
    head_heads: int = 4
    head_layers: int = 2
    head_intermediate: int = 3072
    num_classes: int = 4585
    lora_rank: int = 0

    @property
    def vision_width(self) -> int:
        return self.embed_dim * 2 ** (len(self.depths) - 1)

    @property
    def tokens(self) -> int:
        """1 pooled + the last stage's tokens (145 for Swin-L at 384 px)."""
        side = self.image_size // (self.patch_size * 2 ** (len(self.depths) - 1))
        return 1 + side * side


def tiny_config(num_classes: int = 10, lora_rank: int = 0) -> RAMConfig:
    """The same architecture at toy sizes (64 px, four stages of two blocks, 5 tokens), for tests.
    Its last two stages are no larger than the window, as Swin-L's last stage at 384 px."""
    return RAMConfig(image_size=64, embed_dim=8, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4), window_size=4,
                     embed_width=16, head_hidden=24, head_heads=2, head_layers=2, head_intermediate=32,
                     num_classes=num_classes, lora_rank=lora_rank)


# -- LoRA ------------------------------------------------------------------------------------------
class LoRALinear(nn.Linear):
    """``nn.Linear`` with loralib's LoRA parameters (``lora.Linear`` / ``lora.MergedLinear``).

    groups: which of the ``len(groups)`` equal row blocks of the output get a LoRA pair
            (``(True,)``: the whole output, ``lora.Linear``; ``(True, False, True)``: query and value of a
            fused qkv, ``lora.MergedLinear(enable_lora=[True, False, True])``).
    Shapes as loralib's: ``lora_A`` (rank·k) x in, ``lora_B`` (out/len(groups)·k) x rank, k enabled groups;
    the update of enabled group j is ``lora_B[j-th block] @ lora_A[j-th block] / rank``.
    """

    def __init__(self, in_features: int, out_features: int, rank: int = 0, groups: tuple[bool, ...] = (True,),
                 bias: bool = True):
        super().__init__(in_features, out_features, bias=bias)
        self.rank, self.groups, self.merged = int(rank), tuple(groups), False
        if out_features % len(self.groups):
            raise ValueError(f"LoRALinear: out_features {out_features} is not a multiple of {len(self.groups)} groups")
        if self.rank:
            k = sum(self.groups)
            self.lora_A = nn.Parameter(torch.zeros(self.rank * k, in_features))
            self.lora_B = nn.Parameter(torch.zeros(out_features // len(self.groups) * k, self.rank))

    def delta(self) -> torch.Tensor:
        """The weight update (out x in), zero rows for disabled groups; scale 1/rank (loralib's alpha 1)."""
        return lora_delta(self.lora_A, self.lora_B, self.groups, self.out_features)

    def merge(self, extra: torch.Tensor | None = None) -> None:
        """Fold the update (plus ``extra``, out x in) into ``weight``, as loralib does on ``.eval()``; once."""
        with torch.no_grad():
            if self.rank and not self.merged:
                self.weight += self.delta().to(self.weight.dtype)
            if extra is not None:
                self.weight += extra.to(self.weight.dtype)
        self.merged = True

    def forward(self, x):
        if self.rank and not self.merged:
            return F.linear(x, self.weight + self.delta().to(self.weight.dtype), self.bias)
        return F.linear(x, self.weight, self.bias)


def lora_delta(lora_A, lora_B, groups: tuple[bool, ...], out_features: int) -> torch.Tensor:
    """loralib's merged update for ``lora_A``/``lora_B`` (see :class:`LoRALinear`)."""
    k, rank = sum(groups), lora_B.shape[1]
    block = out_features // len(groups)
    upd = torch.bmm(lora_B.float().view(k, block, rank), lora_A.float().view(k, rank, -1)) / rank
    full = upd.new_zeros(len(groups), block, lora_A.shape[1])
    full[torch.tensor(groups, dtype=torch.bool)] = upd
    return full.view(out_features, -1)


# -- Swin ------------------------------------------------------------------------------------------
def _windows(x, w: int):
    """N x H x W x C -> (N·nW) x w·w x C."""
    n, h, wd, c = x.shape
    x = x.view(n, h // w, w, wd // w, w, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, w * w, c)


def _unwindows(x, w: int, h: int, wd: int):
    n = x.shape[0] // ((h // w) * (wd // w))
    x = x.view(n, h // w, wd // w, w, w, -1).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(n, h, wd, -1)


class WindowAttention(nn.Module):
    """Window self-attention with a learned relative position bias ((2w-1)² x heads table)."""

    def __init__(self, dim: int, window: int, heads: int, lora_rank: int = 0):
        super().__init__()
        self.window, self.heads = window, heads
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        c = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
        rel = (c[:, :, None] - c[:, None, :]).permute(1, 2, 0) + (window - 1)
        self.register_buffer("relative_position_index", rel[..., 0] * (2 * window - 1) + rel[..., 1],
                             persistent=False)
        self.qkv = LoRALinear(dim, 3 * dim, lora_rank, (True, False, True))
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, mask=None):
        """x (N·nW) x w² x C; mask nW x w² x w² (0 / -100) or None."""
        b, n, c = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        bias = bias.view(n, n, self.heads).permute(2, 0, 1).to(q.dtype)  # heads x n x n
        if mask is not None:
            nw = mask.shape[0]
            bias = (bias.unsqueeze(0) + mask.to(q.dtype).unsqueeze(1)).repeat(b // nw, 1, 1, 1)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class SwinBlock(nn.Module):
    """Pre-norm (shifted) window attention + MLP on an H x W token grid. As the official block, a grid
    no larger than the window is one unshifted window."""

    def __init__(self, dim: int, resolution: int, heads: int, window: int, shift: int, mlp_ratio: float,
                 lora_rank: int = 0):
        super().__init__()
        if resolution <= window:
            window, shift = resolution, 0
        self.resolution, self.window, self.shift = resolution, window, shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window, heads, lora_rank)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        mask = None
        if shift:
            img = torch.zeros(1, resolution, resolution, 1)
            cuts = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
            for i, (hs, ws) in enumerate((h, w) for h in cuts for w in cuts):
                img[:, hs, ws, :] = i
            ids = _windows(img, window).squeeze(-1)  # nW x w²
            mask = (ids.unsqueeze(1) - ids.unsqueeze(2) != 0).float() * -100.0
        self.register_buffer("attn_mask", mask, persistent=False)

    def forward(self, x):
        n, length, c = x.shape
        r, w, s = self.resolution, self.window, self.shift
        h = self.norm1(x).view(n, r, r, c)
        if s:
            h = torch.roll(h, shifts=(-s, -s), dims=(1, 2))
        h = _unwindows(self.attn(_windows(h, w), self.attn_mask), w, r, r)
        if s:
            h = torch.roll(h, shifts=(s, s), dims=(1, 2))
        x = x + h.reshape(n, length, c)
        return x + self.mlp(self.norm2(x))


class PatchMerging(nn.Module):
    """2x2 neighbours concatenated (order (0,0), (1,0), (0,1), (1,1)), LayerNorm, Linear 4C -> 2C."""

    def __init__(self, dim: int, resolution: int):
        super().__init__()
        self.resolution = resolution
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)

    def forward(self, x):
        n, _, c = x.shape
        x = x.view(n, self.resolution, self.resolution, c)
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1)
        return self.reduction(self.norm(x.view(n, -1, 4 * c)))


class SwinStage(nn.Module):
    def __init__(self, dim: int, resolution: int, depth: int, heads: int, window: int, mlp_ratio: float,
                 downsample: bool, lora_rank: int = 0):
        super().__init__()
        self.blocks = nn.ModuleList(
            SwinBlock(dim, resolution, heads, window, 0 if i % 2 == 0 else window // 2, mlp_ratio, lora_rank)
            for i in range(depth))
        self.downsample = PatchMerging(dim, resolution) if downsample else None

    def forward(self, x):
        for blk in self.blocks:
            x = blk(x)
        return self.downsample(x) if self.downsample is not None else x


class PatchEmbed(nn.Module):
    def __init__(self, patch: int, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, patch, stride=patch)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x):
        return self.norm(self.proj(x).flatten(2).transpose(1, 2))


class SwinTransformer(nn.Module):
    """RAM's visual encoder: N x 3 x S x S (normalised) -> N x (1 + L) x C, the mean token first."""

    def __init__(self, cfg: RAMConfig):
        super().__init__()
        self.image_size = cfg.image_size
        self.patch_embed = PatchEmbed(cfg.patch_size, cfg.embed_dim)
        res = cfg.image_size // cfg.patch_size
        last = len(cfg.depths) - 1
        self.layers = nn.ModuleList(
            SwinStage(cfg.embed_dim * 2 ** i, res // 2 ** i, d, h, cfg.window_size, cfg.mlp_ratio, i < last,
                      cfg.lora_rank)
            for i, (d, h) in enumerate(zip(cfg.depths, cfg.num_heads)))
        self.norm = nn.LayerNorm(cfg.vision_width)

    def forward(self, x):
        if tuple(x.shape[-2:]) != (self.image_size, self.image_size):
            raise ValueError(f"RAM's visual encoder takes {self.image_size}x{self.image_size} images, "
                             f"got {tuple(x.shape[-2:])}; resize first (the tagger does)")
        x = self.patch_embed(x)
        for layer in self.layers:
            x = layer(x)
        x = self.norm(x)
        return torch.cat([x.mean(1, keepdim=True), x], 1)


# -- the tagging head (BERT cross-attention layers) ------------------------------------------------
class _CrossSelf(nn.Module):
    def __init__(self, hidden: int, width: int, heads: int, lora_rank: int):
        super().__init__()
        self.heads = heads
        self.query = LoRALinear(hidden, hidden, lora_rank)
        self.key = LoRALinear(width, hidden, lora_rank)
        self.value = nn.Linear(width, hidden)

    def forward(self, h, enc):
        n, t, d = h.shape
        q = self.query(h).view(n, t, self.heads, -1).transpose(1, 2)
        k = self.key(enc).view(n, enc.shape[1], self.heads, -1).transpose(1, 2)
        v = self.value(enc).view(n, enc.shape[1], self.heads, -1).transpose(1, 2)
        return F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(n, t, d)


class _AddNorm(nn.Module):
    def __init__(self, d_in: int, hidden: int):
        super().__init__()
        self.dense = nn.Linear(d_in, hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=1e-12)

    def forward(self, x, residual):
        return self.LayerNorm(self.dense(x) + residual)


class _CrossAttention(nn.Module):
    def __init__(self, cfg: RAMConfig):
        super().__init__()
        self.self = _CrossSelf(cfg.head_hidden, cfg.embed_width, cfg.head_heads, cfg.lora_rank)
        self.output = _AddNorm(cfg.head_hidden, cfg.head_hidden)

    def forward(self, h, enc):
        return self.output(self.self(h, enc), h)


class _Intermediate(nn.Module):
    def __init__(self, hidden: int, inner: int):
        super().__init__()
        self.dense = nn.Linear(hidden, inner)

    def forward(self, x):
        return F.gelu(self.dense(x))


class TaggingLayer(nn.Module):
    """BERT layer in RAM's "tagging" mode: cross-attention (no self-attention), then feed-forward."""

    def __init__(self, cfg: RAMConfig):
        super().__init__()
        self.crossattention = _CrossAttention(cfg)
        self.intermediate = _Intermediate(cfg.head_hidden, cfg.head_intermediate)
        self.output = _AddNorm(cfg.head_intermediate, cfg.head_hidden)

    def forward(self, h, enc):
        h = self.crossattention(h, enc)
        return self.output(self.intermediate(h), h)


class _Layers(nn.Module):
    def __init__(self, cfg: RAMConfig):
        super().__init__()
        self.layer = nn.ModuleList(TaggingLayer(cfg) for _ in range(cfg.head_layers))


class TaggingHead(nn.Module):
    """Tag queries N x K x hidden attend to the image embedding N x T x width; the encoder mask is all ones
    (every image token is attended to), so none is applied."""

    def __init__(self, cfg: RAMConfig):
        super().__init__()
        self.encoder = _Layers(cfg)

    def forward(self, queries, image_embeds):
        h = queries
        for layer in self.encoder.layer:
            h = layer(h, image_embeds)
        return h


# -- RAM -------------------------------------------------------------------------------------------
class RAM(nn.Module):
    """RAM's tagging path (see module doc).

    ``image_embeds(x)``: x N x 3 x S x S, ImageNet-normalised -> N x T x embed_width (145 x 512 for Swin-L).
    ``logits(x)``: -> N x classes (a tag is present when sigmoid(logit) > its class threshold).
    """

    def __init__(self, cfg: RAMConfig = RAMConfig()):
        super().__init__()
        self.cfg = cfg
        self.visual_encoder = SwinTransformer(cfg)
        self.image_proj = nn.Linear(cfg.vision_width, cfg.embed_width)
        self.label_embed = nn.Parameter(torch.zeros(cfg.num_classes, cfg.embed_width))
        # the official code projects only when the head is wider than the 512-wide embedding
        self.wordvec_proj = (nn.Linear(cfg.embed_width, cfg.head_hidden) if cfg.head_hidden != cfg.embed_width
                             else nn.Identity())
        self.tagging_head = TaggingHead(cfg)
        self.fc = nn.Linear(cfg.head_hidden, 1)

    def image_embeds(self, x):
        return self.image_proj(self.visual_encoder(x))

    def logits_from_embeds(self, emb):
        queries = F.relu(self.wordvec_proj(self.label_embed)).to(emb.dtype)
        h = self.tagging_head(queries.unsqueeze(0).expand(emb.shape[0], -1, -1), emb)
        return self.fc(h).squeeze(-1)

    def logits(self, x):
        return self.logits_from_embeds(self.image_embeds(x))

    def lora_modules(self) -> dict[str, LoRALinear]:
        return {n: m for n, m in self.named_modules() if isinstance(m, LoRALinear) and m.rank}

    def merge_lora(self, extra: dict[str, torch.Tensor] | None = None) -> None:
        """Fold every LoRA update (plus ``extra``: module name -> out x in update) into its weight."""
        extra = dict(extra or {})
        for name, m in self.named_modules():
            if isinstance(m, LoRALinear):
                m.merge(extra.pop(name, None))
        if extra:
            raise KeyError(f"merge_lora: no LoRA module named {', '.join(sorted(extra))}")
