"""Throughput and memory of `synth build --recipe ftsr` (512² HR, ×4) on the embedded default;
with ``--recipe glyph``, that recipe's rate against ftsr's, measured in the same run.

Each configuration runs in its own process. Printed: samples/s with 1 and 2 Ray workers after
the workers' set-up (scaling efficiency = rate₂ / (2·rate₁)), and the peak RSS of the driver and
of all Ray worker processes for a small and a 4× larger --num, to show memory stays flat.

    .venv/bin/python benchmarks/bench_build.py [--num 48] [--big 192] [--recipe glyph]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time


def _one(num: int, workers: int, per_shard: int, recipe_name: str = "ftsr") -> dict:
    import psutil

    from models.datasets import load_catalog
    from pipelines.build import build
    from pipelines.ray_executor import RayExecutor
    from synth.recipe import load_recipe

    class TimedRay(RayExecutor):
        """Records set-up end and each shard's arrival: the steady rate skips the warm-up, in
        which each worker OCRs every background photo once (verdicts are cached after)."""

        def start(self):
            super().start()
            self.ready_at = time.perf_counter()
            self.arrivals = []

        def next_done(self, timeout=None):
            rec = super().next_done(timeout)
            if rec is not None:
                self.arrivals.append((time.perf_counter(), len(rec["indices"])))
            return rec

    peak = {"workers": 0}
    stop = threading.Event()

    def watch():  # summed RSS of this driver's Ray worker processes
        me = psutil.Process()
        while not stop.is_set():
            rss = 0
            for p in psutil.process_iter(["cmdline", "memory_info"]):
                cmd = " ".join(p.info["cmdline"] or [])
                if p.pid != me.pid and ("ray::" in cmd or "default_worker.py" in cmd):
                    rss += p.info["memory_info"].rss
            peak["workers"] = max(peak["workers"], rss)
            stop.wait(0.2)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    recipe = load_recipe(recipe_name, [f"samples_per_shard={per_shard}"])
    ex = TimedRay(recipe, catalog=load_catalog(), workers=workers)
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        m = build(recipe, out, num, executor=ex, progress=False)
        t1 = time.perf_counter()
    stop.set()
    t.join()
    warm = len(ex.arrivals) // 4
    steady = sum(n for _, n in ex.arrivals[warm + 1:]) / (ex.arrivals[-1][0] - ex.arrivals[warm][0])
    return {"num": num, "workers": workers, "setup_s": ex.ready_at - t0, "run_s": t1 - ex.ready_at,
            "rate": m["counts"]["kept"] / (t1 - ex.ready_at), "steady": steady,
            "worker_peak_mib": peak["workers"] / 2**20,
            "driver_peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _spawn(num: int, workers: int, chunk: int, recipe: str = "ftsr") -> dict:
    out = subprocess.run([sys.executable, __file__, "--one", str(num), str(workers), str(chunk), "--recipe", recipe],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--num", type=int, default=48)
    ap.add_argument("--big", type=int, default=192)
    ap.add_argument("--chunk", type=int, default=4, help="samples per shard (a shard is one worker's task)")
    ap.add_argument("--recipe", default="ftsr",
                    help="another recipe (e.g. glyph) is timed with 2 workers against ftsr in the same run")
    ap.add_argument("--one", nargs=3, type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        print(json.dumps(_one(*a.one, recipe_name=a.recipe)))
        return
    if a.recipe != "ftsr":
        base, other = _spawn(a.num, 2, a.chunk), _spawn(a.num, 2, a.chunk, a.recipe)
        print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; 512² ×4, "
              f"embedded default, 2 workers, --num {a.num}")
        print("| recipe | set-up s | samples/s overall | samples/s steady | workers' peak RSS MiB |")
        print("|---|---|---|---|---|")
        for name, r in (("ftsr", base), (a.recipe, other)):
            print(f"| {name} | {r['setup_s']:.1f} | {r['rate']:.2f} | {r['steady']:.2f} | {r['worker_peak_mib']:.0f} |")
        print(f"{a.recipe} costs {base['steady'] / other['steady']:.2f}x the time per sample of ftsr (steady)")
        return
    runs = [_spawn(a.big, 1, a.chunk), _spawn(a.big, 2, a.chunk), _spawn(a.num, 2, a.chunk)]
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; recipe ftsr 512² ×4, embedded default")
    print("| workers | --num | set-up s | samples/s overall | samples/s steady | driver peak RSS MiB | workers' peak RSS MiB |")
    print("|---|---|---|---|---|---|---|")
    for r in runs:
        print(f"| {r['workers']} | {r['num']} | {r['setup_s']:.1f} | {r['rate']:.2f} | {r['steady']:.2f} | "
              f"{r['driver_peak_mib']:.0f} | {r['worker_peak_mib']:.0f} |")
    r1, r2, rs = runs
    print(f"scaling efficiency, 2 workers vs 1 (steady): {r2['steady'] / (2 * r1['steady']):.2f}")
    print(f"--num {a.big} vs {a.num} (2 workers): driver peak {r2['driver_peak_mib'] / rs['driver_peak_mib']:.2f}x, "
          f"workers' peak {r2['worker_peak_mib'] / rs['worker_peak_mib']:.2f}x")


if __name__ == "__main__":
    main()
