"""Published per-image metric logs, read back so our numbers can be checked against them.

OSEDiff's ``test_metrics.py`` (also run by CODSR and PiSA-SR) logs one line per image::

    24-10-23 17:28:55.120 - INFO: preset/datasets/benchmark_realsr/results_osediff/Canon_005_x1.png | PSNR: 25.1; SSIM: 0.7; … | Runtime …

``read_metrics_log`` returns ``{image file name: {"PSNR": 25.1, "SSIM": 0.7, …}}`` for every such
line (the configuration header and the average line are skipped).
"""
from __future__ import annotations

import re
from pathlib import Path

_LINE = re.compile(r"/([^/\s]+) \| (.*?) \| Runtime")


def read_metrics_log(path: str | Path) -> dict[str, dict[str, float]]:
    out = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        m = _LINE.search(line)
        if m:
            out[m.group(1)] = {k: float(v) for k, v in (kv.split(": ") for kv in m.group(2).split("; "))}
    return out
