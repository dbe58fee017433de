"""The metric protocol: accumulate sums and counts, so per-worker results merge exactly.

A ``Metric`` is built once per run (loading any network then), ``update(sample)`` returns this
image's values (a dict: a metric may report several numbers, e.g. ``ocr_f1`` gives P, R, F1 and
counts) and adds them to its running state; ``compute()`` returns the dataset-level values;
``merge(other)`` adds another instance's state (from another Ray worker) so that the merged
``compute()`` equals what one process would have computed over all images; ``reset()`` clears.
``settings()`` states exactly how the numbers are computed (colour space, crop, averaging …) and
goes into summary.json. A value that cannot be computed is ``None`` — never a silent zero.

TorchMetrics' ``CharErrorRate`` is the model: the maths lives in plain functions, the class only
keeps sums and counts.
"""
from __future__ import annotations

from typing import Any

from evalkit.sample import EvalSample
from models.errors import TextsrError


class MetricUnavailable(TextsrError, RuntimeError):
    """A metric that cannot run here (its weights are missing, a package is absent). ``reason``
    is the short form written to summary.json, e.g. ``weights-missing: lpips_alex.pth (...)``."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class Metric:
    name: str = ""
    higher_is_better: bool = True
    needs: frozenset[str] = frozenset({"sr", "hr"})  # fields of EvalSample it reads

    def settings(self) -> dict[str, Any]:
        return {}

    def update(self, sample: EvalSample) -> dict[str, float | None]:
        raise NotImplementedError

    def compute(self) -> dict[str, float | None]:
        raise NotImplementedError

    def reset(self) -> None:
        raise NotImplementedError

    def merge(self, other: "Metric") -> None:
        raise NotImplementedError


class MeanMetric(Metric):
    """A metric whose dataset value is the mean of per-image values (PSNR, LPIPS, NIQE …).
    Subclasses implement ``value(sample) -> float | None``. Images whose value is None (e.g. no
    text region) are counted in ``skipped`` and left out of the mean."""

    def __init__(self):
        self.reset()

    def value(self, sample: EvalSample) -> float | None:
        raise NotImplementedError

    def update(self, sample: EvalSample) -> dict[str, float | None]:
        v = self.value(sample)
        if v is None:
            self.skipped += 1
        else:
            self.total += float(v)
            self.count += 1
        return {self.name: None if v is None else float(v)}

    def compute(self) -> dict[str, float | None]:
        return {self.name: self.total / self.count if self.count else None}

    def reset(self) -> None:
        self.total, self.count, self.skipped = 0.0, 0, 0

    def merge(self, other: "MeanMetric") -> None:
        self.total += other.total
        self.count += other.count
        self.skipped += other.skipped
