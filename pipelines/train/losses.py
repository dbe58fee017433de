"""TADiSR's training losses, as github.com/mingcv/TADiSR@6f591a6 (MIT) computes them:
``scripts/train/train_cogview4.py`` (``sigmoid_focal_loss``, ``dice_loss``, ``mask_losses``,
``focal_mse``) and ``tadisr/training/losses.py`` (``GaussianSmoothing``,
``DifferentiableEdgeDetector``, ``adjust_image``, ``get_edge_loss_bbox``). Own code, same maths.

Inputs: SR and HR N×3×H×W float in [0, 1]; mask logits N×1×H×W (unbounded) and target mask
N×1×H×W in [0, 1]; boxes per image: a list of 4×2 quadrilaterals (x, y pixels; TL, TR, BR, BL).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def sigmoid_focal_loss(logits, targets, alpha: float = 0.25, gamma: float = 2.0):
    """Per-mask mean of the α-balanced focal BCE, *summed* over the batch (official; N×P inputs)."""
    prob = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = prob * targets + (1 - prob) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss.mean(1).sum()


def dice_loss(logits, targets):
    """1 − (2·Σpt + 1)/(Σp + Σt + 1) per mask, summed over the batch (official; N×P inputs)."""
    p = logits.sigmoid()
    return (1 - (2 * (p * targets).sum(-1) + 1) / (p.sum(-1) + targets.sum(-1) + 1)).sum()


def mask_losses(logits, targets):
    """(focal, dice) of N×… masks, flattened per mask — the official return order."""
    logits, targets = logits.flatten(1), targets.flatten(1)
    return sigmoid_focal_loss(logits, targets), dice_loss(logits, targets)


def focal_mse(sr, hr, mask_logits, mask, gamma: float = 2.0):
    """The official ``focal_mse``: pixel MSE of SR vs HR weighted by (1 − p_t)^γ of the mask
    prediction — the loss that couples mask and SR. Defined, but not added, in ``train_cogview4.py``."""
    prob = mask_logits.sigmoid()
    p_t = prob * mask + (1 - prob) * (1 - mask)
    return (F.mse_loss(sr, hr, reduction="none") * (1 - p_t) ** gamma).mean()


class EdgeDetector(nn.Module):
    """The official ``DifferentiableEdgeDetector``: BT.601 luma, reflect pad 1, a 3×3 Gaussian
    (σ = 3, with the official exponent ``((x − μ)/(2σ))²``), Sobel x/y (zero padding), the border
    pixel dropped, magnitude √(gx² + gy² + 1e-8) clamped to [0, 255]. 3×h×w -> (h−2)×(w−2)."""

    def __init__(self, sigma: float = 3.0):
        super().__init__()
        ax = torch.arange(3, dtype=torch.float32)
        g = 1 / (sigma * math.sqrt(2 * math.pi)) * torch.exp(-(((ax - 1) / (2 * sigma)) ** 2))
        k = g[:, None] * g[None, :]
        self.register_buffer("gauss", (k / k.sum()).view(1, 1, 3, 3), persistent=False)
        sx = torch.tensor([[1.0, 0, -1], [2, 0, -2], [1, 0, -1]])
        sy = torch.tensor([[1.0, 2, 1], [0, 0, 0], [-1, -2, -1]])
        self.register_buffer("sobel", torch.stack([sx, sy])[:, None], persistent=False)
        self.register_buffer("luma", torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1), persistent=False)

    def forward(self, x):
        x = F.conv2d(x[None] if x.dim() == 3 else x, self.luma.to(x.dtype))
        x = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), self.gauss.to(x.dtype))
        g = F.conv2d(x, self.sobel.to(x.dtype), padding=1)[0, :, 1:-1, 1:-1]
        return torch.sqrt(g[0] ** 2 + g[1] ** 2 + 1e-8).clamp(0, 255)


def umeyama(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform (rotation, uniform scale, translation) src -> dst,
    3×3 (Umeyama 1991; what ``skimage.transform._geometric._umeyama(..., True)`` returns)."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    n, dim = src.shape
    sm, dm = src.mean(0), dst.mean(0)
    sd, dd = src - sm, dst - dm
    A = dd.T @ sd / n
    d = np.ones(dim)
    if np.linalg.det(A) < 0:
        d[-1] = -1
    T = np.eye(dim + 1)
    U, S, V = np.linalg.svd(A)
    rank = np.linalg.matrix_rank(A)
    if rank == 0:
        return np.full_like(T, np.nan)
    if rank == dim - 1 and np.linalg.det(U) * np.linalg.det(V) <= 0:
        dd_ = d.copy()
        dd_[-1] = -1
        T[:dim, :dim] = U @ np.diag(dd_) @ V
    elif rank == dim - 1:
        T[:dim, :dim] = U @ V
    else:
        T[:dim, :dim] = U @ np.diag(d) @ V
    scale = 1.0 / sd.var(axis=0).sum() * (S @ d)
    T[:dim, dim] = dm - scale * (T[:dim, :dim] @ sm)
    T[:dim, :dim] *= scale
    return T


def rectify(box: np.ndarray, img):
    """The official ``adjust_image``: warp the quadrilateral ``box`` of ``img`` (C×H×W) upright
    into a w×h crop (w, h = the longer opposite sides) by a similarity transform sampled with
    ``grid_sample`` (bilinear, zeros, ``align_corners=True``), clamped to [0, 255]."""
    p = np.asarray(box, np.float32)
    w = max(np.linalg.norm(p[0] - p[1]), np.linalg.norm(p[2] - p[3]))
    h = max(np.linalg.norm(p[0] - p[3]), np.linalg.norm(p[1] - p[2]))
    M = umeyama(p, np.float32([[0, 0], [w, 0], [w, h], [0, h]]))
    C, H, W = img.shape
    T = np.array([[2 / W, 0, -1], [0, 2 / H, -1], [0, 0, 1]])
    theta = torch.from_numpy(np.linalg.inv(T @ M @ np.linalg.inv(T))[:2]).to(img.device, torch.float32)[None]
    grid = F.affine_grid(theta, [1, C, H, W], align_corners=True).to(img.dtype)
    out = F.grid_sample(img[None], grid, align_corners=True).clamp(0, 255)[0]
    return out[:, :int(h), :int(w)]


def edge_loss(detector: EdgeDetector, sr, hr, boxes) -> torch.Tensor:
    """The official ``get_edge_loss_bbox`` (l2): per image the mean over its boxes of
    MSE(edges(rectified HR box), edges(rectified SR box)), 0 for an image without boxes; mean
    over the batch. A non-finite value raises (as officially)."""
    per = []
    for i in range(sr.shape[0]):
        if not len(boxes[i]):
            per.append(sr.new_zeros(()))
            continue
        ls = [F.mse_loss(detector(rectify(b, hr[i])), detector(rectify(b, sr[i]))) for b in boxes[i]]
        per.append(torch.stack(ls).mean())
    out = torch.stack(per).mean()
    if not torch.isfinite(out):
        raise FloatingPointError(f"edge loss is {out.item()}")
    return out


class LPIPSLoss:
    """LPIPS as the official loss (``lpips.LPIPS(net='vgg')`` called on [0, 1] images without
    ``normalize``, i.e. treated as [-1, 1]), through pyiqa's ``lpips-vgg`` with its weights found
    by evalkit's resolver (:func:`evalkit.metrics.iqa.locate`) — never downloaded unless allowed.
    ``load`` returns (loss or None, reason)."""

    def __init__(self, net):
        self.net = net

    @classmethod
    def load(cls, device, allow_download: bool = False):
        from evalkit.metrics.base import MetricUnavailable
        from evalkit.metrics.iqa import REQUIRED, _import_pyiqa, locate

        try:
            paths = [str(locate(n, allow_download)) for n in REQUIRED["lpips-vgg"]]
            pyiqa = _import_pyiqa()
            m = pyiqa.create_metric("lpips-vgg", as_loss=True, device=torch.device(device),
                                    pretrained_model_path=paths[1])
        except MetricUnavailable as e:
            return None, str(e)
        m.net.requires_grad_(False).eval()
        return cls(m.net), f"lpips-vgg ({paths[1]})"

    def __call__(self, sr, hr):
        return self.net(sr, hr, normalize=False).mean()
