"""``evalkit score --workers N [--address A] [--gpus-per-worker G]``: a benchmark split across Ray actors.

Each actor builds one :class:`evalkit.runner.Scorer` — the benchmark opened by itself, the model
loaded once (on its GPU when ``gpus_per_worker`` > 0, with the OCR engine on onnxruntime's CUDA
provider), the OCR engine and the metrics — and scores batches of keys the driver hands it: SR,
OCR and every metric run there. A batch comes back as its per-image rows, its PNG outputs and each
metric's state over exactly that batch (a delta: the actor resets its accumulators per batch), which
the driver commits in key order (:func:`evalkit.runner.score`); the merged metrics therefore equal
the single-process run's, and so do the rows.

Fault tolerance: an actor whose worker or node dies is restarted by Ray (``max_restarts``) and its
in-flight calls retried (``max_task_retries``); a batch is a pure function of its keys, so a retry
returns the same rows and state. Each batch goes to the actor with the fewest batches in flight.
"""
from __future__ import annotations

import ray

from evalkit.runner import ScoreConfig, ScoreError, Scorer
from pipelines.ray_session import RaySession, get

ACTOR_RESTARTS = 3


class _ScoreActor:
    def __init__(self, cfg: ScoreConfig, device: str | None):
        import cv2
        import torch

        # an actor holds one CPU: one thread each for torch, OpenCV and onnxruntime (OMP comes from
        # the runtime_env), so N actors on N cores do not fight over them
        torch.set_num_threads(1)
        cv2.setNumThreads(1)
        self.scorer = Scorer(cfg, device=device, threads=1)

    def identity(self) -> dict:
        return self.scorer.identity

    def run(self, keys, out):
        return self.scorer.run(keys, out)


class RayScoring:
    def __init__(self, cfg: ScoreConfig, workers: int | None = None, address: str | None = None,
                 gpus_per_worker: float = 0.0):
        if workers is not None and workers < 1:
            raise ScoreError(f"--workers must be at least 1, got {workers}")
        if gpus_per_worker < 0:
            raise ScoreError(f"--gpus-per-worker must be >= 0, got {gpus_per_worker}")
        self.cfg, self.address, self.gpus = cfg, address, gpus_per_worker
        self._asked = workers
        self.workers = workers or 1
        self.session = RaySession(address, num_cpus=workers if not address else None, num_threads=1)
        self._pending: dict = {}   # ObjectRef -> (tag, actor index)
        self._load: list[int] = []
        self.actors: list = []

    def start(self) -> dict:
        self.session.start()
        if self.gpus and self.session.gpus < self.gpus:
            raise ScoreError(f"--gpus-per-worker {self.gpus}: the Ray cluster has {self.session.gpus} GPU(s)")
        self.workers = self._asked or (int(self.session.gpus // self.gpus) if self.gpus else self.session.cpus)
        device = "cuda" if self.gpus else (self.cfg.device or "cpu")
        actor = ray.remote(num_cpus=1, num_gpus=self.gpus, max_restarts=ACTOR_RESTARTS,
                           max_task_retries=ACTOR_RESTARTS)(_ScoreActor)
        self.actors = [actor.remote(self.cfg, device) for _ in range(self.workers)]
        self._load = [0] * self.workers
        identities = get([a.identity.remote() for a in self.actors])  # set-up errors surface here, as themselves
        for i, ident in enumerate(identities[1:], 1):
            if ident != identities[0]:
                from evalkit.runner import _differences

                raise ScoreError(f"worker {i} sees another run than worker 0: "
                                 + "; ".join(_differences(identities[0], ident)[:4]))
        self._identity = identities[0]
        masks = any(m in self._identity["metrics"] for m in ("mask_iou", "mask_f1"))
        # the driver merges and reports: no model, CPU metrics
        self._local = Scorer(self.cfg, device="cpu", with_model=False, masks=masks)
        return self._identity

    def local_scorer(self) -> Scorer:
        return self._local

    def describe(self) -> dict:
        return {"executor": "ray", "address": self.address, "workers": self.workers, "gpus_per_worker": self.gpus,
                "nodes": sum(1 for n in ray.nodes() if n.get("Alive"))}

    def submit(self, tag: int, keys: list[str], out: str) -> None:
        k = min(range(self.workers), key=self._load.__getitem__)
        ref = self.actors[k].run.remote(keys, out)
        self._pending[ref] = (tag, k)
        self._load[k] += 1

    def next_done(self, timeout: float | None = None):
        if not self._pending:
            return None
        ready, _ = ray.wait(list(self._pending), num_returns=1, timeout=timeout)
        if not ready:
            return None
        tag, k = self._pending.pop(ready[0])
        self._load[k] -= 1
        return tag, get(ready[0])

    def close(self) -> None:
        self._pending = {}
        for a in self.actors:
            try:
                ray.kill(a)
            except Exception:  # noqa: BLE001 — its node is gone
                pass
        self.actors = []
        self.session.close()
