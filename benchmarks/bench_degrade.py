"""Our numpy/OpenCV degradation vs a reference chain built from basicsr's own torch functions.

Usage: .venv/bin/python benchmarks/bench_degrade.py [--n 200] [--seed 0] [--scale 4]

Both chains get the same 512x512 HR crops of real photos (skimage colour photos and matplotlib's
grace_hopper.jpg; random crop and flips, images with a side under 512 are first upscaled so their
short side is 512) and the Real-ESRGAN x4plus settings (our "realesrgan" preset). The reference is
Real-ESRGAN's dataset kernel sampling + ``RealESRGANModel.feed_data`` written out with basicsr's
``random_mixed_kernels``, ``circular_lowpass_kernel``, ``USMSharp``, ``filter2D``,
``random_add_{gaussian,poisson}_noise_pt``, ``DiffJPEG`` and ``F.interpolate``, one image at a time
on CPU, timed including the uint8 <-> tensor conversions (ours includes uint8 <-> float32).

Prints seconds per sample for each chain and their ratio, and compares the chains' outputs as
distributions: the per-sample PSNR between the LR and a plain bicubic downscale of the HR, with a
two-sample Kolmogorov-Smirnov test (scipy.stats.ks_2samp). Writes the two PSNR histograms to
benchmarks/degrade_psnr_hist.png and prints a markdown block for benchmarks/RESULTS.md.
Thread counts are the libraries' defaults (torch and OpenCV each use all cores).
"""
from __future__ import annotations

import argparse
import datetime
import math
import platform
import random
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from synth.degrade import degrade, get_preset

HR_SIZE = 512


# --------------------------------------------------------------------------------------------
# inputs
# --------------------------------------------------------------------------------------------

def load_photos() -> list[tuple[str, np.ndarray]]:
    """Colour photographs that ship with skimage / matplotlib, RGB uint8, short side >= 512."""
    import matplotlib.cbook
    import matplotlib.image
    import skimage.data

    photos = []
    for name in ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "retina",
                 "immunohistochemistry", "stereo_motorcycle"):
        try:
            img = getattr(skimage.data, name)()
        except (ImportError, OSError, ValueError) as e:  # some skimage images need pooch + network
            print(f"skipping skimage.data.{name}: {type(e).__name__}: {e}", file=sys.stderr)
            continue
        photos.append((name, img[0] if isinstance(img, tuple) else img))
    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        photos.append(("grace_hopper", matplotlib.image.imread(f)))
    out = []
    for name, img in photos:
        img = np.ascontiguousarray(img[..., :3]).astype(np.uint8)
        short = min(img.shape[:2])
        if short < HR_SIZE:
            f = HR_SIZE / short
            img = cv2.resize(img, (max(HR_SIZE, round(img.shape[1] * f)), max(HR_SIZE, round(img.shape[0] * f))),
                             interpolation=cv2.INTER_CUBIC)
        out.append((name, img))
    return out


def make_crops(photos, n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    crops = []
    for i in range(n):
        _, img = photos[i % len(photos)]
        y = int(rng.integers(img.shape[0] - HR_SIZE + 1))
        x = int(rng.integers(img.shape[1] - HR_SIZE + 1))
        c = img[y:y + HR_SIZE, x:x + HR_SIZE]
        if rng.uniform() < 0.5:
            c = c[:, ::-1]
        if rng.uniform() < 0.5:
            c = c[::-1]
        crops.append(np.ascontiguousarray(c))
    return crops


# --------------------------------------------------------------------------------------------
# reference chain (basicsr + torch, Real-ESRGAN order)
# --------------------------------------------------------------------------------------------

class ReferenceChain:
    """Real-ESRGAN's RealESRGANDataset kernels + RealESRGANModel.feed_data, batch of one, CPU."""

    def __init__(self, cfg, scale: int):
        from models.compat import import_basicsr

        import_basicsr()
        import torch
        import torch.nn.functional as F
        from basicsr.data.degradations import (
            circular_lowpass_kernel,
            random_add_gaussian_noise_pt,
            random_add_poisson_noise_pt,
            random_mixed_kernels,
        )
        from basicsr.utils import DiffJPEG
        from basicsr.utils.img_process_util import USMSharp, filter2D

        self.torch, self.F = torch, F
        self.circular_lowpass_kernel, self.random_mixed_kernels = circular_lowpass_kernel, random_mixed_kernels
        self.gauss, self.poisson, self.filter2D = random_add_gaussian_noise_pt, random_add_poisson_noise_pt, filter2D
        self.jpeger = DiffJPEG(differentiable=False)
        self.usm = USMSharp()
        self.cfg, self.scale = cfg, scale
        self.kernel_range = [2 * v + 1 for v in range(3, 11)]
        self.pulse = torch.zeros(21, 21)
        self.pulse[10, 10] = 1

    def _kernel(self, sinc_prob, sigma, betag, betap):
        c = self.cfg
        size = random.choice(self.kernel_range)
        if np.random.uniform() < sinc_prob:
            omega = np.random.uniform(np.pi / 3, np.pi) if size < 13 else np.random.uniform(np.pi / 5, np.pi)
            k = self.circular_lowpass_kernel(omega, size, pad_to=False)
        else:
            k = self.random_mixed_kernels(list(c.kernel_list), list(c.kernel_prob), size, sigma, sigma,
                                          [-math.pi, math.pi], betag, betap, noise_range=None)
        p = (21 - size) // 2
        return self.torch.FloatTensor(np.pad(k, ((p, p), (p, p))))

    def _noise(self, out, gprob, sigma, pscale, gray):
        if np.random.uniform() < gprob:
            return self.gauss(out, sigma_range=sigma, clip=True, rounds=False, gray_prob=gray)
        return self.poisson(out, scale_range=pscale, gray_prob=gray, clip=True, rounds=False)

    def _resize(self, out, probs, rng_range, size_fn):
        up_down = random.choices(["up", "down", "keep"], probs)[0]
        s = np.random.uniform(1, rng_range[1]) if up_down == "up" else (
            np.random.uniform(rng_range[0], 1) if up_down == "down" else 1)
        mode = random.choice(["area", "bilinear", "bicubic"])
        return size_fn(out, s, mode)

    def __call__(self, hr: np.ndarray) -> np.ndarray:
        torch, F, c, sc = self.torch, self.F, self.cfg, self.scale
        with torch.no_grad():
            # dataset: kernels
            k1 = self._kernel(c.sinc_prob1, list(c.blur_sigma1), list(c.betag_range1), list(c.betap_range1))
            k2 = self._kernel(c.sinc_prob2, list(c.blur_sigma2), list(c.betag_range2), list(c.betap_range2))
            if np.random.uniform() < c.final_sinc_prob:
                size = random.choice(self.kernel_range)
                omega = np.random.uniform(np.pi / 3, np.pi)
                sinc = torch.FloatTensor(self.circular_lowpass_kernel(omega, size, pad_to=21))
            else:
                sinc = self.pulse
            gt = torch.from_numpy(hr).permute(2, 0, 1).unsqueeze(0).float() / 255.0
            # feed_data
            if c.usm_sharpen:
                gt = self.usm(gt)
            h, w = gt.shape[2:]
            out = self.filter2D(gt, k1[None])
            out = self._resize(out, c.resize_prob1, c.resize_range1,
                               lambda o, s, m: F.interpolate(o, scale_factor=s, mode=m))
            out = self._noise(out, c.gaussian_noise_prob1, list(c.noise_range1), list(c.poisson_scale_range1),
                              c.gray_noise_prob1)
            q = out.new_zeros(1).uniform_(*c.jpeg_range1)
            out = self.jpeger(torch.clamp(out, 0, 1), quality=q)
            if np.random.uniform() < c.second_blur_prob:
                out = self.filter2D(out, k2[None])
            out = self._resize(out, c.resize_prob2, c.resize_range2,
                               lambda o, s, m: F.interpolate(o, size=(int(h / sc * s), int(w / sc * s)), mode=m))
            out = self._noise(out, c.gaussian_noise_prob2, list(c.noise_range2), list(c.poisson_scale_range2),
                              c.gray_noise_prob2)
            if np.random.uniform() < 0.5:
                out = F.interpolate(out, size=(h // sc, w // sc), mode=random.choice(["area", "bilinear", "bicubic"]))
                out = self.filter2D(out, sinc[None])
                q = out.new_zeros(1).uniform_(*c.jpeg_range2)
                out = self.jpeger(torch.clamp(out, 0, 1), quality=q)
            else:
                q = out.new_zeros(1).uniform_(*c.jpeg_range2)
                out = self.jpeger(torch.clamp(out, 0, 1), quality=q)
                out = F.interpolate(out, size=(h // sc, w // sc), mode=random.choice(["area", "bilinear", "bicubic"]))
                out = self.filter2D(out, sinc[None])
            lq = torch.clamp((out * 255.0).round(), 0, 255)
            return lq[0].permute(1, 2, 0).to(torch.uint8).numpy()


# --------------------------------------------------------------------------------------------
# measurement
# --------------------------------------------------------------------------------------------

def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10.0 * math.log10(255.0 ** 2 / mse)


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or "unknown"
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200, help="number of HR crops (default 200)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--scale", type=int, default=4, choices=(2, 4, 8))
    ap.add_argument("--plot", type=Path, default=ROOT / "benchmarks" / "degrade_psnr_hist.png")
    args = ap.parse_args()

    import torch
    from scipy.stats import ks_2samp

    cfg = get_preset("realesrgan")
    crops = make_crops(load_photos(), args.n, args.seed)
    ref = ReferenceChain(cfg, args.scale)
    lr_size = (HR_SIZE // args.scale, HR_SIZE // args.scale)
    bic = [cv2.resize(c, lr_size, interpolation=cv2.INTER_CUBIC) for c in crops]

    # warm-up outside the timings (first-call allocations, torch kernels)
    degrade(crops[0], args.scale, cfg, np.random.default_rng(10**9))
    random.seed(10**9), np.random.seed(10**9 % 2**32), torch.manual_seed(10**9)
    ref(crops[0])

    t_ours, t_ref, p_ours, p_ref = [], [], [], []
    for i, (hr, b) in enumerate(zip(crops, bic)):
        rng = np.random.default_rng([args.seed, i])
        t0 = time.perf_counter()
        lr, _ = degrade(hr, args.scale, cfg, rng)
        t_ours.append(time.perf_counter() - t0)
        p_ours.append(psnr(lr, b))

        random.seed(args.seed * 100003 + i), np.random.seed(args.seed * 100003 + i), torch.manual_seed(args.seed * 100003 + i)
        t0 = time.perf_counter()
        lq = ref(hr)
        t_ref.append(time.perf_counter() - t0)
        p_ref.append(psnr(lq, b))
        if (i + 1) % 25 == 0:
            print(f"  {i + 1}/{args.n}  ours {np.mean(t_ours):.4f} s  ref {np.mean(t_ref):.4f} s", flush=True)

    s_ours, s_ref = float(np.mean(t_ours)), float(np.mean(t_ref))
    ks = ks_2samp(p_ours, p_ref)
    ratio = s_ref / s_ours

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bins = np.linspace(min(min(p_ours), min(p_ref)), max(max(p_ours), max(p_ref)), 31)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.hist(p_ref, bins=bins, alpha=0.55, label=f"basicsr reference (mean {np.mean(p_ref):.2f} dB)")
    ax.hist(p_ours, bins=bins, alpha=0.55, label=f"ours (mean {np.mean(p_ours):.2f} dB)")
    ax.set_xlabel(f"PSNR(LR, bicubic x{args.scale} downscale of HR) [dB]")
    ax.set_ylabel("samples")
    ax.set_title(f"realesrgan degradation, n={args.n}, KS p={ks.pvalue:.3f}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.plot, dpi=110)

    rows = [
        ("s/sample, ours (numpy + OpenCV)", f"{s_ours:.4f}"),
        ("s/sample, basicsr reference (torch CPU)", f"{s_ref:.4f}"),
        ("speed ratio (reference / ours)", f"{ratio:.2f}x"),
        ("mean PSNR vs bicubic, ours", f"{np.mean(p_ours):.2f} dB (sd {np.std(p_ours):.2f})"),
        ("mean PSNR vs bicubic, reference", f"{np.mean(p_ref):.2f} dB (sd {np.std(p_ref):.2f})"),
        ("KS two-sample test on PSNR", f"D = {ks.statistic:.3f}, p = {ks.pvalue:.3f}"),
    ]
    cmd = "`.venv/bin/python benchmarks/bench_degrade.py " + " ".join(sys.argv[1:]) + "`"
    print()
    print(f"- machine: {cpu_model()}, {torch.get_num_threads()} torch threads, {cv2.getNumThreads()} OpenCV threads")
    print(f"- date: {datetime.date.today().isoformat()}; command: {cmd}")
    print(f"- n = {args.n} crops of {HR_SIZE}x{HR_SIZE}, scale x{args.scale}, preset realesrgan; "
          f"torch {torch.__version__}, OpenCV {cv2.__version__}, numpy {np.__version__}")
    print()
    print("| measure | value |")
    print("|---|---|")
    for k, v in rows:
        print(f"| {k} | {v} |")
    print(f"\nplot: {args.plot}")


if __name__ == "__main__":
    main()
