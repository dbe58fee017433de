"""Executors run shard jobs (:class:`pipelines.build.ShardJob`) and hand back their records.

Both expose ``start()``, ``workers`` (how many shards may be in flight; known after ``start``),
``submit(job)``, ``next_done(timeout) -> record | None`` (a finished shard's record, in any order;
None when nothing finished within ``timeout`` seconds), ``on_progress`` (called with
``{shard index: samples made}`` of the shards in flight), ``describe()`` (for the manifest) and
``close()`` (cancels what is in flight), and ``run_blocks(fn, args)`` for jobs the driver runs before
the shards (the harvest of photo crop sources, :mod:`pipelines.harvest`), after which
``start(harvested=...)`` tells the workers where the harvests are. :class:`LocalExecutor` runs in this process (debugging,
tiny builds, no Ray); :class:`pipelines.ray_executor.RayExecutor` runs each shard as a Ray task.
"""
from __future__ import annotations

from collections import deque

from synth.factory import SampleFactory
from synth.recipe import Recipe


class LocalExecutor:
    workers = 1

    def __init__(self, recipe: Recipe, catalog=None, num_threads: int | None = None):
        self.recipe, self.catalog, self.num_threads = recipe, catalog, num_threads
        self.factory = None
        self._queue: deque = deque()
        self.on_progress = None

    def run_blocks(self, fn, args):
        """``(n, fn(*args[n]))`` for each block job, in order, in this process (the harvest's jobs)."""
        from pipelines.harvest import local_blocks

        return local_blocks(fn, args)

    def start(self, harvested: dict[str, str] | None = None) -> None:
        """Set up the sample factory; ``harvested``: harvest source name -> its harvest folder."""
        self.factory = SampleFactory(self.recipe, catalog=self.catalog, num_threads=self.num_threads,
                                     harvested=harvested).setup()

    def describe(self) -> dict:
        return {"executor": "local", "workers": 1}

    def submit(self, job) -> None:
        self._queue.append(job)

    def next_done(self, timeout: float | None = None):
        from pipelines.build import make_shard

        job = self._queue.popleft()

        def tick(n: int) -> None:
            if self.on_progress is not None:
                self.on_progress({job.index: n})

        return make_shard(self.factory, job, tick)

    def close(self) -> None:
        self._queue.clear()
