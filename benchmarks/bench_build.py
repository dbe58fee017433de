"""Throughput and memory of `synth build --recipe ftsr` (512² HR, ×4) on the embedded default.

Prints samples/s with 1 and 2 Ray workers (scaling efficiency = rate2 / (2·rate1)), measured after
the workers' set-up, and the peak memory of the driver and of all Ray worker processes for two
sizes of --num, to show memory stays flat as --num grows.

    .venv/bin/python benchmarks/bench_build.py [--num 32] [--big 128]
"""
from __future__ import annotations

import argparse
import resource
import tempfile
import threading
import time

import psutil

from models.datasets import load_catalog
from pipelines.build import build
from pipelines.ray_executor import RayExecutor
from synth.recipe import load_recipe


class TimedRay(RayExecutor):
    """Records when set-up ends, so the rate excludes Ray start and model loading."""

    def start(self):
        super().start()
        self.ready_at = time.perf_counter()


class PeakRSS(threading.Thread):
    """Samples the summed RSS of all Ray worker processes every 0.2 s."""

    def __init__(self):
        super().__init__(daemon=True)
        self.peak, self.stop = 0, False

    def run(self):
        while not self.stop:
            rss = 0
            for p in psutil.process_iter(["cmdline", "memory_info"]):
                cmd = " ".join(p.info["cmdline"] or [])
                if "ray::" in cmd or "default_worker.py" in cmd:
                    rss += p.info["memory_info"].rss
            self.peak = max(self.peak, rss)
            time.sleep(0.2)


def run(num: int, workers: int, chunk: int = 2):
    recipe = load_recipe("ftsr")
    ex = TimedRay(recipe, catalog=load_catalog(), workers=workers)
    mon = PeakRSS()
    mon.start()
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        m = build(recipe, out, num, executor=ex, chunk=chunk, progress=False)
        t1 = time.perf_counter()
    mon.stop = True
    mon.join()
    return {"num": num, "workers": workers, "setup_s": ex.ready_at - t0, "run_s": t1 - ex.ready_at,
            "rate": m["counts"]["kept"] / (t1 - ex.ready_at), "worker_peak_mib": mon.peak / 2**20,
            "driver_peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--num", type=int, default=32)
    ap.add_argument("--big", type=int, default=128)
    a = ap.parse_args()
    r1 = run(a.num, 1)
    r2 = run(a.num, 2)
    rb = run(a.big, 2)
    print("| workers | --num | set-up s | samples/s | worker RSS peak MiB |")
    print("|---|---|---|---|---|")
    for r in (r1, r2, rb):
        print(f"| {r['workers']} | {r['num']} | {r['setup_s']:.1f} | {r['rate']:.2f} | {r['worker_peak_mib']:.0f} |")
    print(f"scaling efficiency 2 workers vs 1: {r2['rate'] / (2 * r1['rate']):.2f}")
    print(f"worker memory at --num {a.big} vs {a.num}: {rb['worker_peak_mib'] / r2['worker_peak_mib']:.2f}x; "
          f"driver peak RSS {rb['driver_peak_mib']:.0f} MiB")


if __name__ == "__main__":
    main()
