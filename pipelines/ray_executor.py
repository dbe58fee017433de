"""The Ray adapter: a pool of actors, each holding one set-up ``SampleFactory``.

A local Ray is started by default (no dashboard, a small object store); ``address`` joins an
existing cluster (``ray start --head`` elsewhere), in which case every node needs this package
installed and the datasets at the same paths (TEXTSR_DATA is forwarded). Results travel back to
the driver, which writes the shards, so workers need no shared filesystem.

A sample's bug comes back inside its ``SampleResult`` (traceback text); an exception outside a
sample (worker set-up) arrives as Ray's ``RayTaskError`` — re-raised as the project error it wraps
when it is one, so a missing weights file stays a one-line message. ``ray.init`` replaces the
driver's SIGTERM handler with ``sys.exit``; the caller's handler is put back, so a terminated build
takes the same path as Ctrl-C.
"""
from __future__ import annotations

import os
import signal
import threading

import ray

from models.errors import TextsrError
from pipelines.build import BuildError
from synth.factory import SampleFactory


class _Worker:
    def __init__(self, recipe, catalog, num_threads):
        self.factory = SampleFactory(recipe, catalog=catalog, num_threads=num_threads).setup()

    def ready(self) -> bool:
        return True

    def run(self, indices):
        return [self.factory.make(i) for i in indices]


class RayExecutor:
    def __init__(self, recipe, catalog=None, workers: int = 2, address: str | None = None,
                 num_threads: int = 1, per_worker_queue: int = 2):
        if workers < 1:
            raise BuildError(f"--workers must be at least 1, got {workers}")
        if num_threads < 1:
            raise BuildError(f"--threads must be at least 1, got {num_threads}")
        self.recipe, self.catalog = recipe, catalog
        self.workers, self.address, self.num_threads = workers, address, num_threads
        self.capacity = workers * per_worker_queue
        self._started_ray = False
        self._pending = {}          # ObjectRef -> (tag, actor index)
        self._load = []

    def start(self) -> None:
        env = {k: os.environ[k] for k in ("TEXTSR_DATA", "TEXTSR_WEIGHTS", "TEXTSR_DATASETS") if k in os.environ}
        env["OMP_NUM_THREADS"] = str(self.num_threads)
        if not ray.is_initialized():
            kw = dict(runtime_env={"env_vars": env}, log_to_driver=False)
            main = threading.current_thread() is threading.main_thread()
            prev = signal.getsignal(signal.SIGTERM) if main else None
            self._started_ray = True  # set first: an interrupted init is shut down by close()
            try:
                if self.address:
                    ray.init(address=self.address, logging_level="WARNING", **kw)
                else:  # our own single-machine Ray: its start-up notices are noise above the bar
                    ray.init(num_cpus=self.workers, include_dashboard=False, logging_level="ERROR",
                             object_store_memory=200 * 1024 * 1024, **kw)
            finally:
                if prev is not None:
                    signal.signal(signal.SIGTERM, prev)
        actor = ray.remote(num_cpus=1)(_Worker)
        self.actors = [actor.remote(self.recipe, self.catalog, self.num_threads) for _ in range(self.workers)]
        self._load = [0] * self.workers
        _get([a.ready.remote() for a in self.actors])  # surface set-up errors now

    def submit(self, tag, indices) -> None:
        k = min(range(self.workers), key=self._load.__getitem__)
        ref = self.actors[k].run.remote(list(indices))
        self._pending[ref] = (tag, k)
        self._load[k] += 1

    def next_done(self):
        [ref], _ = ray.wait(list(self._pending), num_returns=1)
        tag, k = self._pending.pop(ref)
        self._load[k] -= 1
        return tag, _get(ref)

    def close(self) -> None:
        # forget in-flight results first: a killed actor's unfetched refs would otherwise be
        # reported as "unhandled errors" (an actor-died dump) when they are garbage-collected
        self._pending = {}
        for a in getattr(self, "actors", []):
            ray.kill(a)
        self.actors = []
        if self._started_ray:
            ray.shutdown()
            self._started_ray = False


def _get(refs):
    """``ray.get``, with a project error raised in a worker re-raised as itself (one line at the
    command line) instead of Ray's wrapper; anything else keeps Ray's error and remote traceback."""
    try:
        return ray.get(refs)
    except ray.exceptions.RayTaskError as e:
        cause = getattr(e, "cause", None)
        if isinstance(cause, TextsrError):
            raise cause from None
        raise
