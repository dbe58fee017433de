"""One way to start or join Ray for every batch job (synth build, synth prefilter, evalkit score).

- No ``address``: a local Ray on this machine with ``num_cpus`` (default: all), no dashboard and a
  small object store (results are small: workers write their outputs themselves).
- ``address`` (``HOST:PORT`` of ``ray start --head``, or ``ray://HOST:10001``): join that cluster.
  Our code reaches its workers through ``runtime_env["py_modules"]``: the driver's own
  ``models``/``synth``/``evalkit``/``pipelines`` packages are uploaded once per job, so every node
  runs exactly the driver's version (a sample's bytes depend on it). Third-party dependencies
  (torch, onnxruntime, rapidocr, fonts …) must be installed on every node: ``pip install
  textsr-kit`` in the same Python version; datasets at the same path on every node (or fsspec
  URLs where a source takes them).
- ``TEXTSR_DATA``/``TEXTSR_WEIGHTS``/``TEXTSR_DATASETS``/``TEXTSR_CACHE`` are forwarded to workers.

``ray.init`` replaces the driver's SIGTERM handler with ``sys.exit``; the caller's handler is put
back, so a terminated job takes the same clean-up path as Ctrl-C.
"""
from __future__ import annotations

import contextlib
import os
import signal
import threading
from pathlib import Path

import ray

from models.errors import TextsrError

FORWARDED_ENV = ("TEXTSR_DATA", "TEXTSR_WEIGHTS", "TEXTSR_DATASETS", "TEXTSR_CACHE", "HF_HOME", "HF_HUB_OFFLINE")
PACKAGES = ("models", "synth", "evalkit", "pipelines")


class RaySessionError(TextsrError, RuntimeError):
    """Ray cannot be started or joined as asked; the message says why."""


def package_dirs() -> list[str]:
    """The directories of our four packages, as imported by this driver (for ``py_modules``)."""
    import importlib

    return [str(Path(importlib.import_module(p).__file__).parent) for p in PACKAGES]


def runtime_env(address: str | None, num_threads: int | None = None) -> dict:
    env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
    if num_threads:
        env["OMP_NUM_THREADS"] = str(num_threads)
    out: dict = {"env_vars": env}
    if address:
        out["py_modules"] = package_dirs()
        # ship the code, not the caches and build outputs beside it
        out["excludes"] = ["__pycache__", "*.pyc"]
    return out


class RaySession:
    """``with RaySession(address, num_cpus) as s:`` — Ray started (or joined) for the block and shut
    down after it when this session started it. ``s.cpus``: the cluster's CPUs (what ``--workers``
    defaults to)."""

    def __init__(self, address: str | None = None, num_cpus: int | None = None, num_threads: int | None = None,
                 object_store_mb: int = 200):
        self.address, self.num_cpus, self.num_threads = address, num_cpus, num_threads
        self.object_store_mb = object_store_mb
        self.started = False

    def __enter__(self) -> "RaySession":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> None:
        if ray.is_initialized():
            return  # a caller's own Ray (a notebook, a test): used as it is
        kw = dict(runtime_env=runtime_env(self.address, self.num_threads), log_to_driver=False)
        main = threading.current_thread() is threading.main_thread()
        prev = signal.getsignal(signal.SIGTERM) if main else None
        self.started = True  # set first: an interrupted init is shut down by close()
        try:
            if self.address:
                try:
                    ray.init(address=self.address, logging_level="WARNING", **kw)
                except ConnectionError as e:
                    raise RaySessionError(f"--address {self.address}: cannot join a Ray cluster there ({e}); "
                                          "start one with `ray start --head` and give its HOST:PORT") from None
            else:  # our own single-machine Ray: its start-up notices are noise above the progress bar
                ray.init(num_cpus=self.num_cpus, include_dashboard=False, logging_level="ERROR",
                         object_store_memory=self.object_store_mb * 1024 * 1024, **kw)
        finally:
            if prev is not None:
                signal.signal(signal.SIGTERM, prev)

    @property
    def cpus(self) -> int:
        return max(1, int(ray.cluster_resources().get("CPU", 1)))

    @property
    def gpus(self) -> int:
        return int(ray.cluster_resources().get("GPU", 0))

    def close(self) -> None:
        if self.started:
            with contextlib.suppress(Exception):
                ray.shutdown()
            self.started = False


def get(refs):
    """``ray.get``, with a project error raised in a worker re-raised as itself (one line at the
    command line) instead of Ray's wrapper; anything else keeps Ray's error and remote traceback."""
    try:
        return ray.get(refs)
    except ray.exceptions.RayTaskError as e:
        cause = getattr(e, "cause", None)
        if isinstance(cause, TextsrError):
            raise cause from None
        raise
