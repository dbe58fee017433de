"""``textsr-train METHOD --model NAME --data CORPUS --out DIR --max-steps N [--set key=value ...]``.

Trains a method's adapters on a synth corpus (``pipelines.train.<method>``). Several processes:
``accelerate launch --num_processes 2 [--cpu] -m pipelines.train.cli tadisr ...``. Exit codes as
``synth``/``evalkit``: 0 done, 1 a bug (traceback), 2 a usage error (one line), 130/143 interrupted
(the last checkpoint is kept; run again to resume).
"""
from __future__ import annotations

import argparse
import difflib
import sys

METHODS = {"tadisr": "pipelines.train.tadisr", "glyph-sr": "pipelines.train.glyphsr"}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="textsr-train", description="Train a method's adapters on a synth corpus.")
    p.add_argument("method", help=f"one of: {', '.join(METHODS)}")
    p.add_argument("--model", required=True, help="tadisr: tadisr-kolors, tadisr-cogview4, tadisr-kolors-tiny, ...; "
                   "glyph-sr: glyph-sr, glyph-sr-tiny")
    p.add_argument("--data", required=True, help="a synth build output directory (manifest.json + shards/); for glyph-sr a "
                   "`synth build --recipe glyph` one")
    p.add_argument("--out", required=True, help="run directory: checkpoint-<step>/, loss_log.jsonl, loss.png")
    p.add_argument("--max-steps", type=int, required=True)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a training option (seed, lr, batch_size, hr_crop, checkpointing_steps, ...)")
    p.add_argument("--resume", default="auto",
                   help="auto (default: continue from the last checkpoint in --out), never, or a checkpoint dir")
    return p


def _train(a) -> dict:
    import importlib

    from pipelines.cli import UsageError

    if a.method not in METHODS:
        close = difflib.get_close_matches(a.method, list(METHODS), n=3)
        raise UsageError(f"unknown training method {a.method!r}" + (f" (did you mean {', '.join(close)}?)" if close
                                                                     else f"; known: {', '.join(METHODS)}"))
    mod = importlib.import_module(METHODS[a.method])
    cfg = mod.apply_sets(mod.TrainConfig(model=a.model, data=a.data, out=a.out, max_steps=a.max_steps), a.set)
    summary = mod.train(cfg, resume=a.resume)
    if summary.get("rank", 0) == 0:
        print(f"textsr-train {a.method}: {summary['steps']} steps, checkpoint {summary['checkpoint']}"
              + (f", skipped samples {summary['skipped']}" if summary.get("skipped") else ""), file=sys.stderr)
    return 0


def main(argv=None) -> None:
    from pipelines.cli import _run

    a = parser().parse_args(argv)
    a.cmd = a.method
    sys.exit(_run("textsr-train", _train, a))


if __name__ == "__main__":
    main()
