"""HAT, the Hybrid Attention Transformer for image super-resolution.

Paper: X. Chen, X. Wang, J. Zhou, Y. Qiao, C. Dong, "Activating More Pixels in Image
Super-Resolution Transformer", CVPR 2023 (arXiv:2205.04437).
Original code: https://github.com/XPixelGroup/HAT (``hat/archs/hat_arch.py``), Apache-2.0.

This is our own implementation, written from the paper and that file. Its ``state_dict()`` has
the official keys, shapes and dtypes, so the official checkpoints (``Real_HAT_GAN_SRx4.pth``,
``Real_HAT_GAN_SRx4_sharper.pth``, ``HAT_SRx4_ImageNet-pretrain.pth``, ...; weights under
``params_ema``) load with ``strict=True``, and in eval mode ``forward`` computes the official
function (checked against the official module to < 1e-5 in fp32).

Facts about the official code that this file keeps:

- The two relative-position index tables are *persistent* buffers of the top module
  (``relative_position_index_SA`` (ws², ws²), ``relative_position_index_OCA`` (ws², ows²), int64),
  so they are in every official checkpoint. The shifted-window attention mask is not a buffer: it
  is recomputed for each input size, with -100 (not -inf) between regions.
- The mean ``(0.4488, 0.4371, 0.4040)`` is not in the state dict (a non-persistent buffer here).
- ``num_feat`` of the reconstruction head is fixed to 64.
- The overlapping cross-attention pads keys/values with zeros and does not mask the padding.

Differences, all outside the learned function:

- The official network requires H and W to be multiples of ``window_size``; its test harness
  (``HATModel.pre_process``) reflect-pads bottom/right and crops the output. Our ``forward`` does
  the same itself, so any H x W works (padding wider than the image is reflected repeatedly).
- Only ``upsampler='pixelshuffle'`` computes anything in the official forward (any other value
  silently returns the input), and ``resi_connection`` other than '1conv'/'identity' fails late;
  here both raise ``ValueError`` at construction, as do a window too large for ``img_size`` and an
  ``overlap_ratio`` whose overlap is odd (both of which break the official forward). Unknown keyword
  arguments are rejected instead of swallowed by ``**kwargs``.
- Attention uses ``torch.nn.functional.scaled_dot_product_attention`` (same maths, fused kernels).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from types import MappingProxyType

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

_RGB_MEAN = (0.4488, 0.4371, 0.4040)  # DIV2K mean used by the official code
_MASK_VALUE = -100.0  # the official additive value between shifted-window regions

HAT_REAL_X4_KWARGS = MappingProxyType({
    # options/test/HAT_GAN_Real_SRx4.yml (network_g) of the official repo; the same network for
    # Real_HAT_GAN_SRx4.pth, Real_HAT_GAN_SRx4_sharper.pth and HAT_SRx4_ImageNet-pretrain.pth.
    "upscale": 4,
    "in_chans": 3,
    "img_size": 64,
    "window_size": 16,
    "compress_ratio": 3,
    "squeeze_factor": 30,
    "conv_scale": 0.01,
    "overlap_ratio": 0.5,
    "img_range": 1.0,
    "depths": (6, 6, 6, 6, 6, 6),
    "embed_dim": 180,
    "num_heads": (6, 6, 6, 6, 6, 6),
    "mlp_ratio": 2.0,
    "upsampler": "pixelshuffle",
    "resi_connection": "1conv",
})


def hat_tiny_kwargs(scale: int = 4) -> dict:
    """A random-weight HAT for CPU tests: 0.17-0.36 M parameters, mostly the fixed 64-channel head.

    Two blocks per group, so the shifted-window path and its mask are exercised.
    """
    return {
        "upscale": scale,
        "in_chans": 3,
        "img_size": 16,
        "window_size": 4,
        "compress_ratio": 3,
        "squeeze_factor": 3,
        "conv_scale": 0.01,
        "overlap_ratio": 0.5,
        "img_range": 1.0,
        "depths": (2, 2),
        "embed_dim": 12,
        "num_heads": (2, 2),
        "mlp_ratio": 2.0,
        "upsampler": "pixelshuffle",
        "resi_connection": "1conv",
    }


# ---------------------------------------------------------------------------------------------
# index tables, masks, windows


def _grid(n: int) -> torch.Tensor:
    """(2, n*n) row/column coordinates of an n x n grid, row-major."""
    ar = torch.arange(n)
    return torch.stack(torch.meshgrid(ar, ar, indexing="ij")).flatten(1)


def self_attention_position_index(window_size: int) -> torch.Tensor:
    """(ws², ws²) int64 index into a ((2ws-1)², heads) bias table, the official layout."""
    c = _grid(window_size)
    d = c[:, :, None] - c[:, None, :] + (window_size - 1)  # offsets shifted to [0, 2ws-2]
    return d[0] * (2 * window_size - 1) + d[1]


def overlap_position_index(window_size: int, overlap_window: int) -> torch.Tensor:
    """(ws², ows²) int64 index into a ((ws+ows-1)², heads) bias table, the official layout.

    Query ``i`` of the ws x ws window, key ``j`` of the ows x ows overlapping window; the key
    coordinates are counted from the overlapping window's own corner, as in the official code.
    """
    q, k = _grid(window_size), _grid(overlap_window)
    d = k[:, None, :] - q[:, :, None] + (window_size - overlap_window + 1)
    return d[0] * (window_size + overlap_window - 1) + d[1]


def shifted_window_mask(height: int, width: int, window_size: int, shift: int) -> torch.Tensor:
    """(num_windows, ws², ws²) additive mask for the cyclically shifted windows.

    After rolling by -shift, each axis has three regions ([0, n-ws), [n-ws, n-shift), [n-shift, n));
    tokens of a window that come from different regions must not attend to each other.
    """

    def region(n: int) -> torch.Tensor:
        r = torch.zeros(n, dtype=torch.long)
        r[n - window_size:] = 1
        r[n - shift:] = 2
        return r

    label = (region(height)[:, None] * 3 + region(width)[None, :]).float()
    windows = _to_windows(label[None, :, :, None], window_size).squeeze(-1)  # nw, ws²
    differs = windows[:, None, :] != windows[:, :, None]
    return torch.zeros(differs.shape).masked_fill(differs, _MASK_VALUE)


def _to_windows(x: torch.Tensor, ws: int) -> torch.Tensor:
    """(b, h, w, c) -> (b * h/ws * w/ws, ws*ws, c), windows in row-major order per image."""
    b, h, w, c = x.shape
    x = x.reshape(b, h // ws, ws, w // ws, ws, c).transpose(2, 3)
    return x.reshape(-1, ws * ws, c)


def _from_windows(windows: torch.Tensor, ws: int, b: int, h: int, w: int) -> torch.Tensor:
    """Inverse of :func:`_to_windows`: (b*nw, ws*ws, c) -> (b, h, w, c)."""
    c = windows.shape[-1]
    x = windows.reshape(b, h // ws, w // ws, ws, ws, c).transpose(2, 3)
    return x.reshape(b, h, w, c)


def _drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Stochastic depth: drop the whole residual branch per sample (training only)."""
    if p == 0.0 or not training:
        return x
    keep = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(1.0 - p)
    return x * keep / (1.0 - p)


def reflect_pad(x: torch.Tensor, pad_h: int, pad_w: int) -> torch.Tensor:
    """Reflect-pad (..., H, W) bottom/right; pads wider than the image are reflected repeatedly.

    Where one reflection suffices this equals ``F.pad(x, (0, pad_w, 0, pad_h), 'reflect')``.
    """
    while pad_h > 0 or pad_w > 0:
        h, w = x.shape[-2:]
        step_h = min(pad_h, h - 1)
        step_w = min(pad_w, w - 1)
        if (pad_h and not step_h) or (pad_w and not step_w):  # a 1-pixel side cannot reflect
            return F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
        x = F.pad(x, (0, step_w, 0, step_h), mode="reflect")
        pad_h -= step_h
        pad_w -= step_w
    return x


# ---------------------------------------------------------------------------------------------
# building blocks (attribute names follow the official checkpoint keys)


class _Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, drop: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x):
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class _ChannelAttention(nn.Module):
    """RCAN-style squeeze-and-excitation; ``attention.1`` / ``attention.3`` are the convs."""

    def __init__(self, num_feat: int, squeeze_factor: int):
        super().__init__()
        squeezed = num_feat // squeeze_factor
        self.attention = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(num_feat, squeezed, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(squeezed, num_feat, 1),
            nn.Sigmoid(),
        )

    def forward(self, x):
        return x * self.attention(x)


class _ConvBranch(nn.Module):
    """The channel-attention block (CAB) run beside window attention in each HAB."""

    def __init__(self, num_feat: int, compress_ratio: int, squeeze_factor: int):
        super().__init__()
        mid = num_feat // compress_ratio
        self.cab = nn.Sequential(
            nn.Conv2d(num_feat, mid, 3, 1, 1),
            nn.GELU(),
            nn.Conv2d(mid, num_feat, 3, 1, 1),
            _ChannelAttention(num_feat, squeeze_factor),
        )

    def forward(self, x):
        return self.cab(x)


class _WindowAttention(nn.Module):
    """Multi-head self-attention inside ws x ws windows with a learned relative-position bias."""

    def __init__(self, dim, window_size, num_heads, qkv_bias, qk_scale, attn_drop, proj_drop):
        super().__init__()
        self.num_heads = num_heads
        self.window_size = window_size
        self.scale = qk_scale or (dim // num_heads) ** -0.5
        self.attn_drop = attn_drop
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * window_size - 1) ** 2, num_heads))
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def forward(self, x, position_index, mask=None):
        """x: (b*nw, ws², c); position_index: (ws², ws²); mask: (nw, ws², ws²) or None."""
        bn, n, c = x.shape
        q, k, v = self.qkv(x).reshape(bn, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        bias = self.relative_position_bias_table[position_index.reshape(-1)]
        bias = bias.reshape(n, n, self.num_heads).permute(2, 0, 1)  # heads, n, n
        if mask is not None:
            nw = mask.shape[0]
            bias = (bias[None] + mask[:, None]).expand(bn // nw, nw, self.num_heads, n, n)
            bias = bias.reshape(bn, self.num_heads, n, n)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=bias.to(q.dtype), scale=self.scale,
            dropout_p=self.attn_drop if self.training else 0.0)
        return self.proj_drop(self.proj(out.transpose(1, 2).reshape(bn, n, c)))


class _HybridAttentionBlock(nn.Module):
    """HAB: (shifted) window attention + a scaled conv/channel-attention branch, then an MLP."""

    def __init__(self, dim, num_heads, window_size, shift, compress_ratio, squeeze_factor,
                 conv_scale, mlp_ratio, qkv_bias, qk_scale, drop, attn_drop, drop_path, norm_layer):
        super().__init__()
        self.window_size = window_size
        self.shift = shift
        self.conv_scale = conv_scale
        self.drop_path = drop_path
        self.norm1 = norm_layer(dim)
        self.attn = _WindowAttention(dim, window_size, num_heads, qkv_bias, qk_scale, attn_drop, drop)
        self.conv_block = _ConvBranch(dim, compress_ratio, squeeze_factor)
        self.norm2 = norm_layer(dim)
        self.mlp = _Mlp(dim, int(dim * mlp_ratio), drop)

    def forward(self, x, size, position_index, mask):
        h, w = size
        b, _, c = x.shape
        ws, s = self.window_size, self.shift
        y = self.norm1(x).reshape(b, h, w, c)

        conv = self.conv_block(y.permute(0, 3, 1, 2)).permute(0, 2, 3, 1).reshape(b, h * w, c)

        if s:
            y = torch.roll(y, shifts=(-s, -s), dims=(1, 2))
        y = self.attn(_to_windows(y, ws), position_index, mask if s else None)
        y = _from_windows(y, ws, b, h, w)
        if s:
            y = torch.roll(y, shifts=(s, s), dims=(1, 2))

        x = x + _drop_path(y.reshape(b, h * w, c), self.drop_path, self.training) + conv * self.conv_scale
        return x + _drop_path(self.mlp(self.norm2(x)), self.drop_path, self.training)


class _OverlapCrossAttention(nn.Module):
    """OCAB: queries from ws x ws windows attend to keys/values of larger overlapping windows."""

    def __init__(self, dim, window_size, overlap_ratio, num_heads, qkv_bias, qk_scale, mlp_ratio,
                 norm_layer):
        super().__init__()
        self.dim = dim
        self.window_size = window_size
        self.num_heads = num_heads
        self.scale = qk_scale or (dim // num_heads) ** -0.5
        self.overlap_window = int(window_size * overlap_ratio) + window_size
        self.norm1 = norm_layer(dim)
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((window_size + self.overlap_window - 1) ** 2, num_heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = norm_layer(dim)
        self.mlp = _Mlp(dim, int(dim * mlp_ratio))

    def _overlapping_windows(self, t: torch.Tensor) -> torch.Tensor:
        """(b, c, h, w) -> (b*nw, ows², c): zero-padded ows x ows windows at stride ws."""
        ws, ows = self.window_size, self.overlap_window
        b, c = t.shape[:2]
        cols = F.unfold(t, kernel_size=ows, stride=ws, padding=(ows - ws) // 2)  # b, c*ows², nw
        return cols.reshape(b, c, ows * ows, -1).permute(0, 3, 2, 1).reshape(-1, ows * ows, c)

    def forward(self, x, size, position_index):
        h, w = size
        b, _, c = x.shape
        ws, heads, d = self.window_size, self.num_heads, c // self.num_heads
        q, k, v = self.qkv(self.norm1(x)).reshape(b, h, w, 3, c).unbind(3)

        q = _to_windows(q, ws)  # b*nw, ws², c
        k = self._overlapping_windows(k.permute(0, 3, 1, 2))  # b*nw, ows², c
        v = self._overlapping_windows(v.permute(0, 3, 1, 2))
        bn, nq, nk = q.shape[0], q.shape[1], k.shape[1]
        q = q.reshape(bn, nq, heads, d).transpose(1, 2)
        k = k.reshape(bn, nk, heads, d).transpose(1, 2)
        v = v.reshape(bn, nk, heads, d).transpose(1, 2)

        bias = self.relative_position_bias_table[position_index.reshape(-1)]
        bias = bias.reshape(nq, nk, heads).permute(2, 0, 1)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype), scale=self.scale)
        out = _from_windows(out.transpose(1, 2).reshape(bn, nq, c), ws, b, h, w)

        x = x + self.proj(out.reshape(b, h * w, c))
        return x + self.mlp(self.norm2(x))


class _AttentionBlocks(nn.Module):
    """The HABs of one group (alternating plain / shifted windows) followed by one OCAB."""

    def __init__(self, blocks: list[nn.Module], overlap_attn: nn.Module, use_checkpoint: bool):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.overlap_attn = overlap_attn
        self.use_checkpoint = use_checkpoint

    def forward(self, x, size, index_sa, index_oca, mask):
        for blk in self.blocks:
            if self.use_checkpoint and self.training:
                x = checkpoint(blk, x, size, index_sa, mask, use_reentrant=False)
            else:
                x = blk(x, size, index_sa, mask)
        return self.overlap_attn(x, size, index_oca)


class _ResidualGroup(nn.Module):
    """RHAG: attention blocks, a 3x3 conv on the feature map, and a long residual."""

    def __init__(self, residual_group: _AttentionBlocks, dim: int, resi_connection: str):
        super().__init__()
        self.residual_group = residual_group
        self.conv = nn.Conv2d(dim, dim, 3, 1, 1) if resi_connection == "1conv" else nn.Identity()

    def forward(self, x, size, index_sa, index_oca, mask):
        b, _, c = x.shape
        y = self.residual_group(x, size, index_sa, index_oca, mask)
        y = self.conv(y.transpose(1, 2).reshape(b, c, *size))
        return y.flatten(2).transpose(1, 2) + x


class _TokenNorm(nn.Module):
    """The official ``patch_embed`` (patch size is 1 in effect): flatten, then optional LayerNorm."""

    def __init__(self, dim: int, norm_layer):
        super().__init__()
        self.norm = norm_layer(dim) if norm_layer is not None else None

    def forward(self, x):
        x = x.flatten(2).transpose(1, 2)
        return self.norm(x) if self.norm is not None else x


def _upsampler(scale: int, num_feat: int) -> nn.Sequential:
    if scale & (scale - 1) == 0:  # a power of two: conv + PixelShuffle(2), log2(scale) times
        layers = []
        for _ in range(int(math.log2(scale))):
            layers += [nn.Conv2d(num_feat, 4 * num_feat, 3, 1, 1), nn.PixelShuffle(2)]
        return nn.Sequential(*layers)
    if scale == 3:
        return nn.Sequential(nn.Conv2d(num_feat, 9 * num_feat, 3, 1, 1), nn.PixelShuffle(3))
    raise ValueError(f"HAT upscale={scale} is not supported; use a power of two or 3.")


# ---------------------------------------------------------------------------------------------


class HAT(nn.Module):
    """Hybrid Attention Transformer (official constructor signature and defaults).

    Input: (B, in_chans, H, W) float, values in [0, 1] (the official range; ``img_range`` scales
    internally). Output: (B, in_chans, H*upscale, W*upscale), same dtype, not clamped. Any H, W:
    the input is reflect-padded bottom/right to a multiple of ``window_size`` and the output cropped,
    as the official ``HATModel`` test harness does.

    ``img_size`` / ``patch_size`` only matter for ``ape`` (absolute position embedding of a fixed
    size) and for the window-size check; the network itself is size-agnostic.
    """

    def __init__(
        self,
        img_size: int | Sequence[int] = 64,
        patch_size: int = 1,
        in_chans: int = 3,
        embed_dim: int = 96,
        depths: Sequence[int] = (6, 6, 6, 6),
        num_heads: Sequence[int] = (6, 6, 6, 6),
        window_size: int = 7,
        compress_ratio: int = 3,
        squeeze_factor: int = 30,
        conv_scale: float = 0.01,
        overlap_ratio: float = 0.5,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.1,
        norm_layer=nn.LayerNorm,
        ape: bool = False,
        patch_norm: bool = True,
        use_checkpoint: bool = False,
        upscale: int = 2,
        img_range: float = 1.0,
        upsampler: str = "",
        resi_connection: str = "1conv",
    ):
        super().__init__()
        if upsampler != "pixelshuffle":
            raise ValueError(
                f"HAT upsampler={upsampler!r} is not supported: the official network only computes "
                "an output for 'pixelshuffle' (every released checkpoint uses it). Pass "
                "upsampler='pixelshuffle'.")
        if resi_connection not in ("1conv", "identity"):
            raise ValueError(f"HAT resi_connection={resi_connection!r}; expected '1conv' or 'identity'.")
        if len(depths) != len(num_heads):
            raise ValueError(f"HAT depths {tuple(depths)} and num_heads {tuple(num_heads)} differ in length.")
        for heads in num_heads:
            if embed_dim % heads:
                raise ValueError(f"HAT embed_dim={embed_dim} is not divisible by num_heads={heads}.")
        size = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
        patch = (patch_size, patch_size) if isinstance(patch_size, int) else tuple(patch_size)
        resolution = (size[0] // patch[0], size[1] // patch[1])
        if min(resolution) <= window_size:
            # the official blocks then silently shrink their window, which breaks the shared
            # position index and the forward; no released model does this.
            raise ValueError(
                f"HAT img_size={img_size} (patch {patch_size}) must exceed window_size={window_size}.")
        overlap = int(window_size * overlap_ratio)
        if overlap % 2:
            raise ValueError(
                f"HAT overlap_ratio={overlap_ratio} with window_size={window_size} gives an odd overlap "
                f"of {overlap} pixels; the overlapping windows would not tile the image. Choose an "
                "overlap_ratio that makes int(window_size * overlap_ratio) even.")

        self.window_size = window_size
        self.shift_size = window_size // 2
        self.overlap_ratio = overlap_ratio
        self.upscale = upscale
        self.upsampler = upsampler
        self.img_range = img_range
        self.in_chans = in_chans
        self.ape = ape
        num_feat = 64  # fixed in the official code

        mean = torch.tensor(_RGB_MEAN).view(1, 3, 1, 1) if in_chans == 3 else torch.zeros(1, 1, 1, 1)
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("relative_position_index_SA", self_attention_position_index(window_size))
        self.register_buffer("relative_position_index_OCA",
                             overlap_position_index(window_size, window_size + overlap))
        self._mask_cache: dict = {}

        # 1. shallow features
        self.conv_first = nn.Conv2d(in_chans, embed_dim, 3, 1, 1)

        # 2. deep features
        self.patch_embed = _TokenNorm(embed_dim, norm_layer if patch_norm else None)
        if ape:
            self.absolute_pos_embed = nn.Parameter(torch.zeros(1, resolution[0] * resolution[1], embed_dim))
            nn.init.trunc_normal_(self.absolute_pos_embed, std=0.02)
        self.pos_drop = nn.Dropout(drop_rate)
        rates = torch.linspace(0, drop_path_rate, sum(depths), device="cpu").tolist()  # stochastic depth
        self.layers = nn.ModuleList()
        start = 0
        for depth, heads in zip(depths, num_heads):
            blocks = [
                _HybridAttentionBlock(
                    embed_dim, heads, window_size, 0 if i % 2 == 0 else window_size // 2,
                    compress_ratio, squeeze_factor, conv_scale, mlp_ratio, qkv_bias, qk_scale,
                    drop_rate, attn_drop_rate, rates[start + i], norm_layer)
                for i in range(depth)
            ]
            start += depth
            ocab = _OverlapCrossAttention(embed_dim, window_size, overlap_ratio, heads, qkv_bias,
                                          qk_scale, mlp_ratio, norm_layer)
            self.layers.append(
                _ResidualGroup(_AttentionBlocks(blocks, ocab, use_checkpoint), embed_dim, resi_connection))
        self.norm = norm_layer(embed_dim)
        self.conv_after_body = (nn.Conv2d(embed_dim, embed_dim, 3, 1, 1) if resi_connection == "1conv"
                                else nn.Identity())

        # 3. reconstruction
        self.conv_before_upsample = nn.Sequential(nn.Conv2d(embed_dim, num_feat, 3, 1, 1),
                                                  nn.LeakyReLU(inplace=True))
        self.upsample = _upsampler(upscale, num_feat)
        self.conv_last = nn.Conv2d(num_feat, in_chans, 3, 1, 1)

        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def _shift_mask(self, h: int, w: int, device, dtype) -> torch.Tensor:
        key = (h, w, str(device), dtype)
        mask = self._mask_cache.get(key)
        if mask is None:
            if len(self._mask_cache) > 8:
                self._mask_cache.clear()
            mask = shifted_window_mask(h, w, self.window_size, self.shift_size).to(device, dtype)
            self._mask_cache[key] = mask
        return mask

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, embed_dim, H, W) with H, W multiples of window_size -> same shape."""
        b, c, h, w = x.shape
        mask = self._shift_mask(h, w, x.device, x.dtype)
        t = self.patch_embed(x)
        if self.ape:
            t = t + self.absolute_pos_embed
        t = self.pos_drop(t)
        for layer in self.layers:
            t = layer(t, (h, w), self.relative_position_index_SA, self.relative_position_index_OCA, mask)
        t = self.norm(t)
        return t.transpose(1, 2).reshape(b, c, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_chans:
            raise ValueError(f"HAT expects a (B, {self.in_chans}, H, W) tensor, got shape {tuple(x.shape)}.")
        h, w = x.shape[-2:]
        ws = self.window_size
        x = reflect_pad(x, (-h) % ws, (-w) % ws)

        mean = self.mean.to(x.dtype)
        x = (x - mean) * self.img_range
        x = self.conv_first(x)
        x = self.conv_after_body(self.forward_features(x)) + x
        x = self.conv_last(self.upsample(self.conv_before_upsample(x)))
        x = x / self.img_range + mean
        return x[..., : h * self.upscale, : w * self.upscale]
