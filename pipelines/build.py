"""``synth build``: shards built by workers, each written by the worker that made it.

Shard ``s`` holds sample indices ``[s·n, (s+1)·n)`` (``n = samples_per_shard``), so the layout is
fixed by the recipe and ``--num`` alone. A shard is one job (:class:`ShardJob`): the worker that
runs it makes its samples in index order and writes the shard itself, atomically, to the output
location — a local path, a shared filesystem or any fsspec URL — and returns only its record
(count, sha256 hashed while writing, per-stage counts). Sample bytes never pass through the
driver, which writes only ``manifest.json``. Shards finish in any order; at most ``workers`` are in
flight and each one that lands frees a slot, so a slow shard holds up nobody (no head-of-line
blocking); the manifest records each as it lands. A shard whose worker or node is lost is run
again (by Ray's task retries, then by the driver); builds are deterministic, so the retry writes
the same bytes.

``--resume`` trusts the manifest: a recorded shard whose file exists with its recorded size is
done (``verify=True`` re-hashes every one); temp files of killed writers are swept; the rest is
built — nothing duplicated or lost.

What a build reports is what happened: ``complete`` is true only when every requested sample was
kept. A rejected input (``synth.types.Rejected``) or a bad input file (a ``TextsrError``) is counted
and the sample retried; any other exception in a sample is a bug: it is logged with its traceback
and counted as ``error/<Type>``, and the ``max_errors``-th one stops the build with
:class:`SampleError` (finished shards stay valid; the manifest says ``complete: false`` and holds the
first traceback). A shard stops itself (unwritten) at its own ``max_errors``-th bug, so a bug that
hits every sample ends the build after a few samples, not after a whole shard. The executor is
started before anything is written, so a build that cannot start leaves no manifest behind to
block the next one.
"""
from __future__ import annotations

import datetime as _dt
import logging
import math
import socket
import sys
from collections import Counter
from dataclasses import dataclass

from models.errors import TextsrError
from models.files import CostThrottle, Location
from models.versions import versions
from synth.recipe import Recipe
from synth.shards import MANIFEST, SHARDS_DIR, AtomicShardWriter, read_manifest, shard_name

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
    """The bar: finished shards' samples plus what the in-flight ones report (a retried shard starts
    again from 0, so the bar may step back: it shows what exists, not what was once made)."""

    def __init__(self, total: int, initial: int, enabled: bool):
        self.bar = None
        self.finished = initial
        self.in_flight: dict[int, int] = {}
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, unit="sample", dynamic_ncols=True,
                            desc="synth build", file=sys.stderr, smoothing=0.1)
        self.kept = self.rejected = 0

    def show(self, in_flight: dict[int, int]) -> None:
        self.in_flight = dict(in_flight)
        self._refresh()

    def _refresh(self) -> None:
        if self.bar:
            n = self.finished + sum(self.in_flight.values())
            if n != self.bar.n:
                self.bar.update(n - self.bar.n)  # update(), not n=: keeps tqdm's rate and ETA right

    def shard_done(self, rec: dict) -> None:
        self.in_flight.pop(rec["index"], None)
        self.finished += len(rec["indices"])
        c = rec["counts"]
        self.kept += c.get("kept", 0)
        self.rejected += sum(v for k, v in c.items() if k != "kept")
        if self.bar:
            self.bar.set_postfix(kept=self.kept, rejected=self.rejected, refresh=False)
        self._refresh()

    def write(self, msg: str) -> None:
        if self.bar:
            self.bar.write(msg, file=sys.stderr)
        else:
            log.warning(msg)

    def close(self) -> None:
        if self.bar:
            self.bar.close()


@dataclass(frozen=True)
class ShardJob:
    """One shard to make: its index, sample indices, where it goes (``out``: a local path or URL;
    ``file``: relative to it) and how many bugs it tolerates before it gives up unwritten."""

    index: int
    indices: tuple[int, ...]
    out: str
    file: str
    max_errors: int


def make_shard(factory, job: ShardJob, on_sample=None) -> dict:
    """Make ``job``'s samples in index order with a set-up ``SampleFactory`` and write them to its
    shard; ``on_sample(n_done)`` after each. Returns the shard's record: ``count``, ``sha256`` and
    ``bytes`` (of the bytes as written), ``counts`` (``stage/reason`` -> n, plus ``kept``),
    ``failed_keys``, ``examples``, ``errors`` (``[key, traceback]`` of each bug) and ``aborted``
    (the shard met ``max_errors`` bugs and was not written)."""
    loc = Location(job.out)
    counts, examples, failed, errors = Counter(), {}, [], []
    rec = {"index": job.index, "file": job.file, "first": job.indices[0], "indices": list(job.indices),
           "node": socket.gethostname()}
    with AtomicShardWriter(job.file, location=loc) as writer:
        for n, i in enumerate(job.indices, 1):
            res = factory.make(i)
            counts.update(res.counts)
            for k, v in res.examples.items():
                examples.setdefault(k, v)
            errors += [[res.key, tb] for tb in res.errors]
            if res.members is None:
                failed.append(res.key)
            else:
                writer.write(res.key, res.members)
            if on_sample is not None:
                on_sample(n)
            if len(errors) >= job.max_errors:
                writer.abort()
                return {**rec, "aborted": True, "count": 0, "sha256": None, "bytes": 0, "counts": dict(counts),
                        "failed_keys": failed, "examples": examples, "errors": errors}
        count, digest = writer.close()
    return {**rec, "aborted": False, "count": count, "sha256": digest, "bytes": writer.size,
            "counts": dict(counts), "failed_keys": failed, "examples": examples, "errors": errors}


def _done_shards(loc: Location, manifest: dict, verify: bool) -> list[dict]:
    """The manifest's shards that can be kept: the file exists with its recorded size (and, with
    ``verify``, its sha256), and no sample was lost to a bug (the code may be fixed by now)."""
    good = []
    for s in manifest.get("shards", []):
        where = loc.path(s["file"])
        if any(k.startswith("error/") for k in s.get("counts", {})):
            log.warning("shard %s lost samples to an unexpected error; it will be rebuilt", where)
        elif not loc.isfile(s["file"]) or ("bytes" in s and loc.size(s["file"]) != s["bytes"]):
            log.warning("shard %s is missing or not the size the manifest records; it will be rebuilt", where)
        elif verify and loc.sha256(s["file"]) != s["sha256"]:
            log.warning("shard %s does not match its sha256; it will be rebuilt", where)
        else:
            good.append(s)
    return good


_RECORD_KEYS = ("index", "file", "first", "count", "sha256", "bytes", "counts", "failed_keys", "node")


def build(recipe: Recipe, out, num: int, *, executor, resume: bool = False, overwrite: bool = False,
          progress: bool = True, stop_after_shards: int | None = None, max_errors: int = MAX_ERRORS,
          verify: bool = False) -> dict:
    """Build ``num`` samples into ``out`` (a local path or fsspec URL). ``executor`` is an
    un-started :class:`~pipelines.executors.LocalExecutor` or
    :class:`~pipelines.ray_executor.RayExecutor`. ``verify``: on ``resume``, re-hash the finished
    shards instead of trusting the manifest. ``stop_after_shards`` ends the run early (for tests of
    ``--resume``). Returns the manifest, whose ``complete`` is true only when
    ``counts.kept == num``. Raises :class:`SampleError` at the ``max_errors``-th unexpected exception
    in a sample (a bug), after writing the manifest."""
    if num < 1:
        raise BuildError(f"--num must be at least 1, got {num}")
    if max_errors < 1:
        raise BuildError(f"--max-errors must be at least 1, got {max_errors}")
    loc = Location(out)
    if loc.exists() and not loc.isdir():
        raise BuildError(f"--out {out} is a file; give a directory (new or holding a build)")
    n_per = recipe.samples_per_shard
    n_shards = math.ceil(num / n_per)
    old = read_manifest(loc)
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
        done = _done_shards(loc, old, verify)
    # photo crop sources are harvested first (through the executor: Ray tasks or in-process) into
    # <out>/harvest/, which the workers read; then the workers start (Ray, model set-up) — before
    # the manifest is touched: a build that cannot start must not leave one that blocks the next
    try:
        harvests = _harvest(recipe, out, executor, progress)
        executor.start(**({"harvested": {k: h["folder"] for k, h in harvests.items()}} if harvests else {}))
    except BaseException:
        executor.close()
        raise
    try:
        _prepare(loc, recipe, overwrite)
        manifest = {
            "format": MANIFEST_FORMAT, "sample_version": SAMPLE_VERSION, "recipe": recipe.to_dict(),
            "recipe_hash": recipe.hash(),
            "num": num, "samples_per_shard": n_per, "num_shards": n_shards,
            "created": (old or {}).get("created", _now()) if resume else _now(), "updated": _now(),
            "complete": False, "versions": versions(), "executor": executor.describe(),
            "shards": done, "counts": {},
            "examples": (old or {}).get("examples", {}) if resume else {},
        }
        if harvests:  # what the photo crop sources gave: counts by verdict, OCR + segmenter identity
            manifest["harvest"] = {k: {**h, "folder": _relative(h["folder"], out)} for k, h in harvests.items()}
        done_idx = {s["index"] for s in done}
        todo = [ShardJob(index=s, indices=tuple(range(s * n_per, min(num, (s + 1) * n_per))), out=str(out),
                         file=shard_name(recipe.name, s), max_errors=max_errors)
                for s in range(n_shards) if s not in done_idx]
        _summarise(manifest)
        loc.write_json(MANIFEST, manifest)
    except BaseException:
        executor.close()
        raise

    bar = _Progress(total=num, initial=num - sum(len(j.indices) for j in todo), enabled=progress)
    if todo and n_shards < executor.workers:
        bar.write(f"synth build: {len(todo)} shard(s) to build for {executor.workers} workers: a shard is one "
                  f"worker's job, so at most {len(todo)} run at once (lower samples_per_shard for more)")
    executor.on_progress = bar.show
    errors: list[tuple[str, str]] = []   # (key, traceback text) of each unexpected exception
    finished = 0
    throttle = CostThrottle()  # the manifest grows with the shards: rewritten when cheap, always at the end
    try:
        queue = list(reversed(todo))
        in_flight = 0
        while queue or in_flight:
            while queue and in_flight < executor.workers:
                executor.submit(queue.pop())
                in_flight += 1
            got = executor.next_done(timeout=0.5)
            if got is None:
                continue
            in_flight -= 1
            rec = got
            bar.shard_done(rec)
            for k, v in rec["examples"].items():
                manifest["examples"].setdefault(k, v)
            for key, tb in rec["errors"]:
                errors.append((key, tb))
                # a bug is shown whole: under Ray it came from another process
                bar.write(f"{key}: unexpected error {len(errors)}/{max_errors} (a bug, not a bad input):\n{tb.rstrip()}")
            bugs = {k for k, _ in rec["errors"]}
            for key in rec["failed_keys"]:
                if key not in bugs:
                    bar.write(f"skipped {key}: every attempt was rejected")
            if not rec["aborted"]:
                manifest["shards"].append({k: rec[k] for k in _RECORD_KEYS})
                finished += 1
                if throttle.due():  # every landing while cheap; a shard the manifest misses is rebuilt
                    with throttle.timing():
                        _write_manifest(loc, manifest)
            if len(errors) >= max_errors:
                raise _Abort
            if stop_after_shards is not None and finished >= stop_after_shards:
                raise _Stop
    except _Stop:
        pass
    except _Abort:
        key, tb = errors[0]
        manifest["error"] = {"key": key, "traceback": tb, "errors": len(errors), "max_errors": max_errors}
    finally:
        executor.close()  # cancels shards still in flight: their temp files are swept next
        loc.remove_temps(SHARDS_DIR)
        bar.close()
        # also when interrupted or failing: every shard that landed is recorded (the throttle may have
        # skipped the last few rewrites)
        _summarise(manifest)
        manifest["complete"] = (len(manifest["shards"]) == n_shards and manifest["counts"]["kept"] == num
                                and "error" not in manifest)
        _write_manifest(loc, manifest)
    if "error" in manifest:
        key, tb = errors[0]
        raise SampleError(f"{len(errors)} sample(s) raised an unexpected exception (a bug, not a bad input); the "
                          f"build stopped (--max-errors {max_errors}). Finished shards are kept and the manifest "
                          f"says complete: false. The first, in sample {key}:\n{tb.rstrip()}")
    return manifest


def _harvest(recipe: Recipe, out, executor, progress: bool) -> dict:
    """Harvest every ``harvest: true`` crop source of ``recipe`` into ``<out>/harvest/`` with the
    executor's workers; ``{source name: summary}`` (see :func:`pipelines.harvest.harvest_source`)."""
    from pipelines.harvest import build_folder, harvest_source, harvest_specs
    from synth.harvest import spec_key

    return {spec_key(s): harvest_source(recipe, s, build_folder(out, s), run_blocks=executor.run_blocks,
                                        catalog=executor.catalog, num_threads=executor.num_threads,
                                        progress=progress)
            for s in harvest_specs(recipe)}


def _relative(folder: str, out) -> str:
    """``folder`` relative to the build's ``out`` (the manifest names files within the build)."""
    loc = Location(out)
    base = loc.path() if loc.local is None else str(loc.local.resolve())
    return folder[len(base):].lstrip("/") if folder.startswith(base) else folder


def _write_manifest(loc: Location, manifest: dict) -> None:
    manifest["shards"].sort(key=lambda d: d["index"])
    manifest["updated"] = _now()
    _summarise(manifest)
    loc.write_json(MANIFEST, manifest)


def _prepare(loc: Location, recipe: Recipe, overwrite: bool) -> None:
    if overwrite:
        for name in loc.listdir(SHARDS_DIR):
            if name.startswith(f"{recipe.name}-") and ".tar" in name:
                loc.remove(f"{SHARDS_DIR}/{name}")
    loc.makedirs(SHARDS_DIR)
    loc.remove_temps(SHARDS_DIR)  # a killed build's partial shards: their samples are regenerated


class _Stop(Exception):
    pass


class _Abort(Exception):
    pass
