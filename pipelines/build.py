"""``synth build``: stream samples from an executor into atomically written shards.

Shard ``s`` holds sample indices ``[s·n, (s+1)·n)`` (``n = samples_per_shard``), so the layout is
fixed by the recipe and ``--num`` alone. Chunks are submitted in index order with a bounded
window, results are written in index order as they arrive, and the driver holds at most
``window`` chunks of encoded samples: memory stays flat however large ``--num`` is. After each
shard the manifest is rewritten atomically; ``--resume`` verifies the finished shards' sha256,
drops temp files and regenerates the rest — deterministic, so nothing is duplicated or lost.

What a build reports is what happened: ``complete`` is true only when every requested sample was
kept. A rejected input (``synth.types.Rejected``) or a bad input file (a ``TextsrError``) is counted
and the sample retried; any other exception in a sample is a bug: it is logged with its traceback
and counted as ``error/<Type>``, and the ``max_errors``-th one stops the build with
:class:`SampleError` (finished shards stay valid; the manifest says ``complete: false`` and holds the
first traceback). The executor is started before anything is written, so a build that cannot start
leaves no manifest behind to block the next one.
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
# 3: OCR reads each detected line on its own (no batch padding): the embedded page crops' labels,
#    background text rejections and glyph guidance readings can differ.
SAMPLE_VERSION = 3


MAX_ERRORS = 3  # unexpected exceptions (bugs) tolerated in one build before it stops


class BuildError(TextsrError, RuntimeError):
    """A build that cannot start or continue; the message says why and what to do."""


class SampleError(RuntimeError):
    """Samples raised unexpected exceptions — a bug, not a bad input — ``max_errors`` times. Not a
    ``TextsrError``: the command line shows it with its traceback and exits 1. The message holds
    the first failing sample's own traceback (text: under Ray it was raised in another process)."""


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
        if any(k.startswith("error/") for k in s.get("counts", {})):
            # samples lost to a bug: the code may be fixed by now, and the rebuild is deterministic
            log.warning("shard %s lost samples to an unexpected error; it will be rebuilt", p)
        elif p.is_file() and sha256_file(p) == s["sha256"]:
            good.append(s)
        else:
            log.warning("shard %s is missing or does not match its sha256; it will be rebuilt", p)
    return good


def build(recipe: Recipe, out: str | Path, num: int, *, executor, resume: bool = False,
          overwrite: bool = False, chunk: int = 4, progress: bool = True,
          stop_after_shards: int | None = None, max_errors: int = MAX_ERRORS) -> dict:
    """Build ``num`` samples into ``out``. ``executor`` is an un-started Local/RayExecutor.
    ``stop_after_shards`` ends the run early (for tests of ``--resume``). Returns the manifest,
    whose ``complete`` is true only when ``counts.kept == num``. Raises :class:`SampleError` at the
    ``max_errors``-th unexpected exception in a sample (a bug), after writing the manifest."""
    if num < 1:
        raise BuildError(f"--num must be at least 1, got {num}")
    if chunk < 1:
        raise BuildError(f"--chunk must be at least 1, got {chunk}")
    if max_errors < 1:
        raise BuildError(f"--max-errors must be at least 1, got {max_errors}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise BuildError(f"--out {out} is a file; give a directory (new or holding a build)")
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
    # start workers (Ray, model set-up) before touching the directory: a build that cannot start
    # must not leave a manifest that blocks the next attempt
    executor.start()
    try:
        _prepare(out, recipe, overwrite)
        manifest = {
            "format": MANIFEST_FORMAT, "sample_version": SAMPLE_VERSION, "recipe": recipe.to_dict(),
            "recipe_hash": recipe.hash(),
            "num": num, "samples_per_shard": n_per, "num_shards": n_shards,
            "created": (old or {}).get("created", _now()) if resume else _now(), "updated": _now(),
            "complete": False, "versions": versions(), "shards": done, "counts": {},
            "examples": (old or {}).get("examples", {}) if resume else {},
        }
        done_idx = {s["index"] for s in done}
        todo = [s for s in range(n_shards) if s not in done_idx]
        _summarise(manifest)
        write_json_atomic(out / "manifest.json", manifest)
    except BaseException:
        executor.close()
        raise

    chunks = [(s, list(range(lo, min(lo + chunk, min(num, (s + 1) * n_per)))))
              for s in todo for lo in range(s * n_per, min(num, (s + 1) * n_per), chunk)]
    remaining = sum(len(ix) for _, ix in chunks)
    bar = _Progress(total=num, initial=num - remaining, enabled=progress)
    writer = None
    errors: list[tuple[str, str]] = []   # (key, traceback text) of each unexpected exception
    try:
        window = max(1, executor.capacity)
        next_submit = 0
        buffered: dict[int, list] = {}
        next_write = 0
        shard_counts, shard_failed, current = Counter(), [], None
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
                    if res.errors:
                        for tb in res.errors:
                            errors.append((res.key, tb))
                            # a bug is shown as it happens, whole: under Ray it came from another process
                            bar.write(f"{res.key}: unexpected error {len(errors)}/{max_errors} (a bug, not a "
                                      f"bad input):\n{tb.rstrip()}")
                    if res.members is None:
                        shard_failed.append(res.key)
                        if not res.errors:
                            bar.write(f"skipped {res.key}: every attempt was rejected ({dict(res.counts)})")
                    else:
                        writer.write(res.key, res.members)
                if len(errors) >= max_errors:
                    raise _Abort
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
    except _Abort:
        key, tb = errors[0]
        manifest["error"] = {"key": key, "traceback": tb, "errors": len(errors), "max_errors": max_errors}
    finally:
        if writer is not None:
            writer.abort()  # the unfinished shard: its samples are regenerated by --resume
        for p in (out / "shards").glob("*.tmp"):
            # also one whose writer an interrupt (SIGTERM) cut short while it was being opened
            p.unlink(missing_ok=True)
        bar.close()
        executor.close()
    _summarise(manifest)
    manifest["complete"] = (len(manifest["shards"]) == n_shards and manifest["counts"]["kept"] == num
                            and "error" not in manifest)
    manifest["updated"] = _now()
    write_json_atomic(out / "manifest.json", manifest)
    if "error" in manifest:
        key, tb = errors[0]
        raise SampleError(f"{len(errors)} sample(s) raised an unexpected exception (a bug, not a bad input); the "
                          f"build stopped (--max-errors {max_errors}). Finished shards are kept and the manifest "
                          f"says complete: false. The first, in sample {key}:\n{tb.rstrip()}")
    return manifest


def _prepare(out: Path, recipe: Recipe, overwrite: bool) -> None:
    if overwrite and (out / "shards").is_dir():
        for p in (out / "shards").glob(f"{recipe.name}-*.tar*"):
            p.unlink()
    (out / "shards").mkdir(parents=True, exist_ok=True)
    for p in (out / "shards").glob("*.tmp"):
        p.unlink()  # a killed build's partial shard: its samples are regenerated


class _Stop(Exception):
    pass


class _Abort(Exception):
    pass
