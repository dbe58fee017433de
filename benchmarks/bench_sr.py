"""Real-ESRGAN on CPU: our torch nets with the weights converted from ncnn vs ncnn itself.

Usage: .venv/bin/python benchmarks/bench_sr.py [--repeats 3] [--tile 128] [--big 2048]
       [--rss-tile 256] [--skip-rss]

1. Seconds per ``--tile``² RGB input tile (a crop of skimage's chelsea photo) for
   realesrgan-x4plus and realesr-animevideov3-x4: ours (basicsr RRDBNet / SRVGGNetCompact with
   the weights from ``models.sr.ncnn_convert``, ``torch.inference_mode``, 2 threads; default
   contiguous and ``channels_last`` memory format) and ncnn's
   CPU path (the same .param/.bin, 2 threads, Vulkan off), both from uint8 RGB in to float out.
   One warm-up each, then ``--repeats`` timed rounds interleaved (ours, ncnn, ours channels_last);
   medians are reported with the ratio ncnn / ours (> 1: ours is faster).
2. Peak RSS of upscaling a ``--big``² image with realesr-animevideov3-x4, whole vs in
   ``--rss-tile`` px tiles (32 px overlap, the library's ``models.sr.base.tiled_forward``,
   cross-faded), each case in its own subprocess: the peak RSS of
   the pass itself (VmHWM, reset after imports and loading) and the process's ``ru_maxrss``.
   The whole-image x4plus pass is skipped when its estimated activation memory exceeds 20 GiB.

Prints markdown for benchmarks/RESULTS.md.
"""
from __future__ import annotations

import argparse
import copy
import datetime
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.sr.base import tiled_forward  # noqa: E402
from models.sr.ncnn_convert import (  # noqa: E402
    embedded_net,
    find_ncnn_files,
    ncnn_io_blobs,
    read_ncnn_param,
)

THREADS = 2
MODELS = ("realesrgan-x4plus", "realesr-animevideov3-x4")
RAM_LIMIT = 20 * 2**30


def photo(size: int) -> np.ndarray:
    """RGB uint8 size x size: a crop of chelsea, resized up (cubic) when larger than the photo."""
    import cv2
    import skimage.data

    img = skimage.data.chelsea()  # 300 x 451
    if size <= min(img.shape[:2]):
        return np.ascontiguousarray(img[:size, 60:60 + size])
    return cv2.resize(img[:, 75:375], (size, size), interpolation=cv2.INTER_CUBIC)


def to_tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(img).permute(2, 0, 1)[None].float().div_(255)


class NcnnRunner:
    def __init__(self, model: str):
        import ncnn

        self.ncnn = ncnn
        param, bin_, _ = find_ncnn_files(model)
        self.net = ncnn.Net()
        self.net.opt.use_vulkan_compute = False
        self.net.opt.num_threads = THREADS
        assert self.net.load_param(str(param)) == 0 and self.net.load_model(str(bin_)) == 0
        self.blob_in, self.blob_out = ncnn_io_blobs(read_ncnn_param(param))

    def __call__(self, img: np.ndarray) -> np.ndarray:
        h, w = img.shape[:2]
        mat = self.ncnn.Mat.from_pixels(img, self.ncnn.Mat.PixelType.PIXEL_RGB, w, h)
        mat.substract_mean_normalize([], [1 / 255.0] * 3)
        ex = self.net.create_extractor()
        ex.input(self.blob_in, mat)
        ret, out = ex.extract(self.blob_out)
        assert ret == 0
        return np.array(out)


def bench_speed(model: str, tile: int, repeats: int) -> dict:
    module, _ = embedded_net(model)
    module_cl = copy.deepcopy(module).to(memory_format=torch.channels_last)
    runner = NcnnRunner(model)
    img = photo(tile)

    def ours():
        with torch.inference_mode():
            return module(to_tensor(img))[0].numpy()

    def ours_cl():
        with torch.inference_mode():
            return module_cl(to_tensor(img).contiguous(memory_format=torch.channels_last))[0].numpy()

    a, b, c = ours(), runner(img), ours_cl()  # warm-up; also a parity check on this tile
    diff = max(float(np.abs(a - b).max()), float(np.abs(c - b).max()))
    times: dict[str, list[float]] = {"ours": [], "ours_cl": [], "ncnn": []}
    for _ in range(repeats):  # interleaved, so load from other jobs hits all three alike
        for name, fn in (("ours", ours), ("ncnn", lambda: runner(img)), ("ours_cl", ours_cl)):
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {"model": model, **{k: statistics.median(v) for k, v in times.items()},
            "all": times, "max_diff": diff}


# --------------------------------------------------------------------------------------------
# peak memory, one subprocess per case
# --------------------------------------------------------------------------------------------

RSS_OVERLAP = 32  # SRVGGNetCompact's reach: its default tile overlap in the library


def _status_mib(field: str) -> float:
    with open("/proc/self/status") as f:
        return next(int(ln.split()[1]) for ln in f if ln.startswith(field + ":")) / 1024


def _reset_peak_rss() -> bool:
    """Reset VmHWM (Linux >= 4.0: write 5 to clear_refs) so set-up (imports, loading) does not
    mask the pass's own peak."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def rss_case(model: str, big: int, tile: int) -> dict:
    """Runs inside the subprocess: prints peak RSS (MiB) of one upscale."""
    torch.set_num_threads(THREADS)
    module, info = embedded_net(model)
    x = to_tensor(photo(big))
    before = _status_mib("VmRSS")
    setup_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    reset = _reset_peak_rss()
    t0 = time.perf_counter()
    with torch.inference_mode():
        y = module(x) if tile == 0 else tiled_forward(module, x, info["scale"], tile, RSS_OVERLAP)
    secs = time.perf_counter() - t0
    peak = _status_mib("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"model": model, "tile": tile, "seconds": secs, "peak_rss_mib": peak,
            "maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "setup_peak_mib": setup_peak, "rss_before_mib": before, "out_shape": list(y.shape)}


def run_rss_case(model: str, big: int, tile: int) -> dict:
    cmd = [sys.executable, __file__, "--_rss-case", model, "--big", str(big), "--rss-tile", str(tile)]
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def whole_image_estimate(model: str, big: int) -> int:
    """Bytes of the two largest activations alive at once in a whole-image pass (fp32)."""
    hr = (4 * big) ** 2
    if model == "realesrgan-x4plus":  # conv_hr: 64-ch input and 64-ch output at HR size
        return 2 * 64 * hr * 4
    return 2 * 64 * big * big * 4 + 2 * 3 * hr * 4  # LR features + pixel-shuffled out + base


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--tile", type=int, default=128)
    ap.add_argument("--big", type=int, default=2048)
    ap.add_argument("--rss-tile", type=int, default=256)
    ap.add_argument("--skip-rss", action="store_true")
    ap.add_argument("--_rss-case", dest="rss_case", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rss_case:
        print(json.dumps(rss_case(args.rss_case, args.big, args.rss_tile)))
        return

    torch.set_num_threads(THREADS)
    import ncnn

    speed = [bench_speed(m, args.tile, args.repeats) for m in MODELS]
    cpu = next((ln.split(":", 1)[1].strip() for ln in subprocess.run(
        ["lscpu"], check=False, capture_output=True, text=True).stdout.splitlines() if ln.startswith("Model name")),
        platform.processor())
    print(f"- machine: {cpu} (`lscpu` model name), {THREADS} threads for torch and ncnn")
    print(f"- date: {datetime.date.today().isoformat()}")
    print(f"- versions: torch {torch.__version__} (CPU), ncnn {ncnn.__version__}, "
          f"python {platform.python_version()}")
    print(f"- command: `.venv/bin/python benchmarks/bench_sr.py --repeats {args.repeats} --tile {args.tile} "
          f"--big {args.big} --rss-tile {args.rss_tile}`\n")
    print(f"| model | ours s/tile ({args.tile}²) | ours, channels_last | ncnn s/tile | ncnn / ours "
          f"| ncnn / ours channels_last | max abs diff vs ncnn (×255) |")
    print("|---|---|---|---|---|---|---|")
    for r in speed:
        print(f"| {r['model']} | {r['ours']:.3f} | {r['ours_cl']:.3f} | {r['ncnn']:.3f} | "
              f"{r['ncnn'] / r['ours']:.2f}× | {r['ncnn'] / r['ours_cl']:.2f}× | {r['max_diff'] * 255:.4f} |")
    print("\nall runs (s): " + "; ".join(
        f"{r['model']}: " + ", ".join(f"{k} {[round(t, 3) for t in v]}" for k, v in r["all"].items())
        for r in speed))
    if args.skip_rss:
        return

    print(f"\n| case ({args.big}² in, ×4) | seconds | peak RSS during the pass MiB | RSS before the pass MiB "
          f"| peak − before MiB | process maxrss MiB |")
    print("|---|---|---|---|---|---|")
    est = whole_image_estimate("realesrgan-x4plus", args.big)
    if est > RAM_LIMIT:
        print(f"| realesrgan-x4plus whole | skipped: conv_hr needs two 64-ch {4 * args.big}² fp32 maps, "
              f"≥ {est / 2**30:.0f} GiB | | | | |")
    for tile in (0, args.rss_tile):
        if tile == 0 and whole_image_estimate("realesr-animevideov3-x4", args.big) > RAM_LIMIT:
            print("| realesr-animevideov3-x4 whole | skipped (> 20 GiB) | | | | |")
            continue
        r = run_rss_case("realesr-animevideov3-x4", args.big, tile)
        name = "whole" if tile == 0 else f"{tile}-px tiles"
        print(f"| realesr-animevideov3-x4 {name} | {r['seconds']:.1f} | {r['peak_rss_mib']:.0f} | "
              f"{r['rss_before_mib']:.0f} | {r['peak_rss_mib'] - r['rss_before_mib']:.0f} | {r['maxrss_mib']:.0f} |")


if __name__ == "__main__":
    main()
