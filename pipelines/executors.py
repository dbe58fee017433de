"""Executors run ``SampleFactory.make`` over chunks of sample indices.

Both expose ``submit(tag, indices)`` and ``next_done() -> (tag, [SampleResult])`` plus
``capacity`` (how many chunks may be in flight). ``LocalExecutor`` runs in this process (debugging,
tiny builds); ``pipelines.ray_executor.RayExecutor`` runs a pool of Ray actors.
"""
from __future__ import annotations

from collections import deque

from synth.factory import SampleFactory
from synth.recipe import Recipe


class LocalExecutor:
    capacity = 1

    def __init__(self, recipe: Recipe, catalog=None, num_threads: int | None = None):
        self.factory = SampleFactory(recipe, catalog=catalog, num_threads=num_threads)
        self._queue: deque = deque()

    def start(self) -> None:
        self.factory.setup()

    def submit(self, tag, indices: list[int]) -> None:
        self._queue.append((tag, indices))

    def next_done(self):
        tag, indices = self._queue.popleft()
        return tag, [self.factory.make(i) for i in indices]

    def close(self) -> None:
        pass
