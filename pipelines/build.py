"""``synth build``: stream samples from an executor into atomically written shards.

Shard ``s`` holds sample indices ``[s·n, (s+1)·n)`` (``n = samples_per_shard``), so the layout is
fixed by the recipe and ``--num`` alone. Chunks are submitted in index order with a bounded
window, results are written in index order as they arrive, and the driver holds at most
``window`` chunks of encoded samples: memory stays flat however large ``--num`` is. After each
shard the manifest is rewritten atomically; ``--resume`` verifies the finished shards' sha256,
drops temp files and regenerates the rest — deterministic, so nothing is duplicated or lost.
"""
from __future__ import annotations

import datetime as _dt
import logging
import math
import sys
from collections import Counter
from pathlib import Path

from synth.recipe import Recipe
from models.files import sha256_file, write_json_atomic
from models.versions import versions
from synth.shards import AtomicShardWriter, read_manifest, shard_path
from models.errors import TextsrError

log = logging.getLogger("synth.build")
MANIFEST_FORMAT = "textsr-synth/1"
# Bumped whenever the same recipe and seed start giving different sample bytes (a change in how a
# stage draws or computes), so --resume never mixes samples of two code versions in one corpus.
# 2: Poisson noise by per-pixel CDF inversion (synth.degrade.pipeline._poisson).
SAMPLE_VERSION = 2


class BuildError(TextsrError, RuntimeError):
    """A build that cannot start or continue; the message says why and what to do."""


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _rejections(counts: Counter) -> dict:
    out: dict = {}
    for k, v in sorted(counts.items()):
        if k == "kept":
            continue
        stage, _, reason = k.partition("/")
        out.setdefault(stage, {})[reason] = v
    return out


def _summarise(manifest: dict) -> None:
    total = Counter()
    for s in manifest["shards"]:
        total.update(s["counts"])
    manifest["counts"] = {"kept": total.get("kept", 0), "requested": manifest["num"],
                          "failed": sum(len(s["failed_keys"]) for s in manifest["shards"]),
                          "rejected": _rejections(total)}


class _Progress:
    def __init__(self, total: int, initial: int, enabled: bool):
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, unit="sample", dynamic_ncols=True,
                            desc="synth build", file=sys.stderr, smoothing=0.1)
        self.kept = self.rejected = 0

    def update(self, results) -> None:
        for r in results:
            self.kept += r.counts.get("kept", 0)
            self.rejected += sum(v for k, v in r.counts.items() if k != "kept")
        if self.bar:
            self.bar.set_postfix(kept=self.kept, rejected=self.rejected, refresh=False)
            self.bar.update(len(results))

    def write(self, msg: str) -> None:
        if self.bar:
            self.bar.write(msg, file=sys.stderr)
        else:
            log.warning(msg)

    def close(self) -> None:
        if self.bar:
            self.bar.close()


def _verified_shards(out: Path, manifest: dict) -> list[dict]:
    good = []
    for s in manifest.get("shards", []):
        p = out / s["file"]
        if p.is_file() and sha256_file(p) == s["sha256"]:
            good.append(s)
        else:
            log.warning("shard %s is missing or does not match its sha256; it will be rebuilt", p)
    return good


def build(recipe: Recipe, out: str | Path, num: int, *, executor, resume: bool = False,
          overwrite: bool = False, chunk: int = 4, progress: bool = True,
          stop_after_shards: int | None = None) -> dict:
    """Build ``num`` samples into ``out``. ``executor`` is an un-started Local/RayExecutor.
    ``stop_after_shards`` ends the run early (for tests of ``--resume``). Returns the manifest."""
    if num < 1:
        raise BuildError(f"--num must be at least 1, got {num}")
    out = Path(out)
    n_per = recipe.samples_per_shard
    n_shards = math.ceil(num / n_per)
    old = read_manifest(out)
    if old is not None and not (resume or overwrite):
        raise BuildError(f"{out} already holds a build (manifest.json); pass --resume to continue it "
                         "or --overwrite to start again")
    done: list[dict] = []
    if old is not None and resume:
        if old.get("recipe_hash") != recipe.hash():
            raise BuildError(f"{out}: --resume with a different recipe (manifest {old.get('recipe_hash')}, "
                             f"now {recipe.hash()}); use the same recipe and --set values, or --overwrite")
        if old.get("sample_version", 1) != SAMPLE_VERSION:
            raise BuildError(f"{out}: --resume of a build made by another version of synth (sample version "
                             f"{old.get('sample_version', 1)}, now {SAMPLE_VERSION}) whose samples differ for the "
                             "same recipe; finish it with that version, or --overwrite")
        if old.get("num") != num:
            raise BuildError(f"{out}: --resume with --num {num}, but the build was started with {old.get('num')}")
        done = _verified_shards(out, old)
    if overwrite and (out / "shards").is_dir():
        for p in (out / "shards").glob(f"{recipe.name}-*.tar*"):
            p.unlink()
    (out / "shards").mkdir(parents=True, exist_ok=True)
    for p in (out / "shards").glob("*.tmp"):
        p.unlink()  # a killed build's partial shard: its samples are regenerated below
    manifest = {
        "format": MANIFEST_FORMAT, "sample_version": SAMPLE_VERSION, "recipe": recipe.to_dict(),
        "recipe_hash": recipe.hash(),
        "num": num, "samples_per_shard": n_per, "num_shards": n_shards,
        "created": (old or {}).get("created", _now()) if resume else _now(), "updated": _now(),
        "complete": False, "versions": versions(), "shards": done, "counts": {}, "examples": (old or {}).get("examples", {}) if resume else {},
    }
    done_idx = {s["index"] for s in done}
    todo = [s for s in range(n_shards) if s not in done_idx]
    _summarise(manifest)
    write_json_atomic(out / "manifest.json", manifest)

    chunks = [(s, list(range(lo, min(lo + chunk, min(num, (s + 1) * n_per)))))
              for s in todo for lo in range(s * n_per, min(num, (s + 1) * n_per), chunk)]
    remaining = sum(len(ix) for _, ix in chunks)
    bar = _Progress(total=num, initial=num - remaining, enabled=progress)
    executor.start()
    try:
        window = max(1, executor.capacity)
        next_submit = 0
        buffered: dict[int, list] = {}
        next_write = 0
        writer, shard_counts, shard_failed, current = None, Counter(), [], None
        finished = 0
        while next_write < len(chunks):
            while next_submit < len(chunks) and next_submit < next_write + window:
                executor.submit(next_submit, chunks[next_submit][1])
                next_submit += 1
            tag, results = executor.next_done()
            buffered[tag] = results
            bar.update(results)
            while next_write in buffered:
                s = chunks[next_write][0]
                if current != s:
                    writer = AtomicShardWriter(shard_path(out, recipe.name, s))
                    shard_counts, shard_failed, current = Counter(), [], s
                for res in buffered.pop(next_write):
                    shard_counts.update(res.counts)
                    for k, v in res.examples.items():
                        manifest["examples"].setdefault(k, v)
                    if res.members is None:
                        shard_failed.append(res.key)
                        bar.write(f"skipped {res.key}: every attempt was rejected ({dict(res.counts)})")
                    else:
                        writer.write(res.key, res.members)
                next_write += 1
                last_of_shard = next_write == len(chunks) or chunks[next_write][0] != s
                if last_of_shard:
                    count, digest = writer.close()
                    manifest["shards"].append({
                        "index": s, "file": str(shard_path(out, recipe.name, s).relative_to(out)),
                        "first": s * n_per, "count": count, "sha256": digest,
                        "counts": dict(shard_counts), "failed_keys": shard_failed})
                    manifest["shards"].sort(key=lambda d: d["index"])
                    manifest["updated"] = _now()
                    _summarise(manifest)
                    write_json_atomic(out / "manifest.json", manifest)
                    writer, current = None, None
                    finished += 1
                    if stop_after_shards is not None and finished >= stop_after_shards:
                        raise _Stop
    except _Stop:
        pass
    finally:
        if writer is not None:
            writer.abort()
        bar.close()
        executor.close()
    manifest["complete"] = len(manifest["shards"]) == n_shards
    manifest["updated"] = _now()
    _summarise(manifest)
    write_json_atomic(out / "manifest.json", manifest)
    return manifest


class _Stop(Exception):
    pass
