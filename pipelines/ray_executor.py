"""The Ray adapter of ``synth build``: each shard is one Ray task, written by the worker that makes it.

Why tasks, not Ray Data: a shard is a fixed, ordered group of sample indices written as one
file; a task per shard keeps that unit whole (Ray Data's datasinks write blocks whose boundaries
Ray chooses, and a retried block would re-write another file name), and Ray retries a task whose
worker or node died (``max_retries``) with no code of ours. A worker process keeps the set-up
``SampleFactory`` of the current build between tasks (a per-process memo), so models are loaded
once per worker process, not once per shard.

Fault tolerance: a task whose worker process or node is lost is re-run by Ray up to
:data:`TASK_RETRIES` times, then by the driver up to :data:`DRIVER_RESUBMITS` more; the build is
deterministic, so a re-run writes the same bytes (under its own temp name: an attempt cut off
mid-write never touches the final file). Each in-flight shard reports how many samples it has
made to a small progress actor on the driver's node, which the driver polls for the bar.

A sample's bug comes back inside the shard's record (traceback text); an exception outside a
sample (worker set-up) arrives as Ray's ``RayTaskError`` — re-raised as the project error it wraps
when it is one, so a missing weights file stays a one-line message.
"""
from __future__ import annotations

import logging
import time
import uuid

import ray

from pipelines.build import BuildError, make_shard
from pipelines.ray_session import RaySession, get

log = logging.getLogger("synth.build")

TASK_RETRIES = 3        # Ray's own re-runs of a shard whose worker or node died
DRIVER_RESUBMITS = 2    # then the driver submits it again this many times before giving up
REPORT_EVERY_S = 1.0    # a shard reports its progress at most this often

_MEMO: dict = {}        # per worker process: {build id: set-up SampleFactory} (the current build only)


def _factory(build_id: str, setup: tuple):
    f = _MEMO.get(build_id)
    if f is None:
        from synth.factory import SampleFactory

        _MEMO.clear()  # a long-lived worker keeps one build's models, not every build's
        recipe, catalog, threads, harvested = setup
        f = _MEMO[build_id] = SampleFactory(recipe, catalog=catalog, num_threads=threads,
                                            harvested=harvested).setup()
    return f


def _setup_check(build_id: str, setup: tuple) -> bool:
    _factory(build_id, setup)
    return True


def _shard_task(build_id: str, setup: tuple, job, board) -> dict:
    factory = _factory(build_id, setup)
    last = [0.0]

    def report(n: int) -> None:
        now = time.monotonic()
        if now - last[0] >= REPORT_EVERY_S or n == len(job.indices):
            last[0] = now
            board.report.remote(job.index, n)  # fire and forget: progress only (a retry restarts from 0)

    rec = make_shard(factory, job, report)
    ctx = ray.get_runtime_context()
    rec["node"] = f"{rec['node']}/{ctx.get_node_id()[:8]}"
    return rec


class _ProgressBoard:
    """Samples made so far by each in-flight shard (the latest report: a retried shard's count
    starts again from 0)."""

    def __init__(self):
        self.done: dict[int, int] = {}

    def report(self, shard: int, n: int) -> None:
        self.done[shard] = n

    def snapshot(self) -> dict[int, int]:
        return dict(self.done)


class RayExecutor:
    """Shards as Ray tasks on a local Ray (default) or an existing cluster (``address``).
    ``workers``: shards in flight at once (default: the cluster's CPUs, known after ``start``)."""

    def __init__(self, recipe, catalog=None, workers: int | None = None, address: str | None = None,
                 num_threads: int = 1):
        if workers is not None and workers < 1:
            raise BuildError(f"--workers must be at least 1, got {workers}")
        if num_threads < 1:
            raise BuildError(f"--threads must be at least 1, got {num_threads}")
        self.recipe, self.catalog = recipe, catalog
        self.address, self.num_threads = address, num_threads
        self._asked = workers
        self.workers = workers or 1
        self.session = RaySession(address, num_cpus=workers if not address else None, num_threads=num_threads)
        self._pending: dict = {}     # ObjectRef -> (job, driver submissions so far)
        self.on_progress = None
        self._board = None
        self.nodes = 0

    def run_blocks(self, fn, args):
        """``(n, fn(*args[n]))`` for each block job as it finishes (any order): one Ray task per
        block (``num_cpus=1``, re-run by Ray when its worker dies), at most 2x workers in flight.
        Starts the Ray session (``start`` then reuses it)."""
        self.session.start()
        width = 2 * (self._asked or self.session.cpus)
        task = ray.remote(num_cpus=1, max_retries=TASK_RETRIES)(fn)
        pending: dict = {}
        nxt = 0
        while nxt < len(args) or pending:
            while nxt < len(args) and len(pending) < width:
                pending[task.remote(*args[nxt])] = nxt
                nxt += 1
            [ref], _ = ray.wait(list(pending), num_returns=1)
            yield pending.pop(ref), get(ref)

    def start(self, harvested: dict[str, str] | None = None) -> None:
        """Start (or reuse) the Ray session and set up one worker; ``harvested``: harvest source
        name -> its harvest folder, which every worker reads."""
        self.session.start()
        self.workers = self._asked or self.session.cpus
        self.nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
        self._build_id = uuid.uuid4().hex
        self._setup = ray.put((self.recipe, self.catalog, self.num_threads, harvested))
        here = ray.get_runtime_context().get_node_id()
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        self._board = ray.remote(num_cpus=0)(_ProgressBoard).options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=True)).remote()
        self._task = ray.remote(num_cpus=1, max_retries=TASK_RETRIES, retry_exceptions=False)(_shard_task)
        # set up one worker now: a configuration error (missing weights, bad source) surfaces before
        # anything is written, as itself
        get(ray.remote(num_cpus=1, max_retries=TASK_RETRIES)(_setup_check).remote(self._build_id, self._setup))

    def describe(self) -> dict:
        return {"executor": "ray", "address": self.address, "workers": self.workers, "nodes": self.nodes,
                "task_retries": TASK_RETRIES, "driver_resubmits": DRIVER_RESUBMITS}

    def submit(self, job, tries: int = 0) -> None:
        ref = self._task.remote(self._build_id, self._setup, job, self._board)
        self._pending[ref] = (job, tries)

    def next_done(self, timeout: float | None = None):
        if not self._pending:
            return None
        ready, _ = ray.wait(list(self._pending), num_returns=1, timeout=timeout)
        if self.on_progress is not None and self._board is not None:
            in_flight = {job.index for job, _ in self._pending.values()}
            try:
                snap = ray.get(self._board.snapshot.remote(), timeout=5)
            except (ray.exceptions.RayError, TimeoutError):
                snap = {}
            self.on_progress({k: v for k, v in snap.items() if k in in_flight})
        if not ready:
            return None
        ref = ready[0]
        job, tries = self._pending.pop(ref)
        try:
            return get(ref)
        except ray.exceptions.RayTaskError:
            raise  # a bug outside any sample: its remote traceback, exit 1
        except ray.exceptions.RayError as e:  # worker/node lost after Ray's own retries
            if tries >= DRIVER_RESUBMITS:
                raise BuildError(f"shard {job.index}: its worker was lost {TASK_RETRIES + 1} × {tries + 1} times "
                                 f"({type(e).__name__}: {str(e).splitlines()[0]}); finished shards are kept — "
                                 "continue with --resume once the cluster is healthy") from None
            log.warning("shard %d: its worker was lost (%s); submitting it again", job.index, type(e).__name__)
            self.submit(job, tries + 1)
            return None

    def close(self) -> None:
        # cancel what is in flight; forget the refs first, so a killed task's unfetched result is
        # not reported as an "unhandled error" when it is garbage-collected
        refs, self._pending = list(self._pending), {}
        # our own local Ray: shutting it down ends its workers. On a cluster, ask the running
        # shards to stop (not force=True: Ray 2.60 aborts the driver with "Tried to complete task
        # that was not pending" when a force-cancel races a task that is just finishing)
        for ref in refs if not self.session.started else ():
            try:
                ray.cancel(ref)
            except Exception:  # noqa: BLE001 — already finished or its node is gone
                pass
        if self._board is not None:
            try:
                ray.kill(self._board)
            except Exception:  # noqa: BLE001
                pass
            self._board = None
        self.session.close()
