"""The metric protocol: accumulate sums and counts, so per-worker results merge exactly.

A ``Metric`` is built once per run (loading any network then), ``update(sample)`` returns this
image's values (a dict: a metric may report several numbers, e.g. ``ocr_f1`` gives P, R, F1 and
counts) and adds them to its running state; ``compute()`` returns the dataset-level values;
``merge(other)`` adds another instance's state (from another Ray worker) so that the merged
``compute()`` equals what one process would have computed over all images; ``reset()`` clears.
``settings()`` states exactly how the numbers are computed (colour space, crop, averaging …) and
goes into summary.json. A value that cannot be computed is ``None`` — never a silent zero.

Exactness. Integer counts are ints. Every float accumulator is an :class:`ExactSum`, whose value is
the correctly rounded sum of everything added, so the merged result is bit-identical to the one-pass
result whatever the order of images and however they were split among workers. (A plain ``+=`` gives
different last bits for another order.) The FID statistics (2048² sums) are float64 arrays instead:
their merge is exact up to float64 addition order (~1e-16 relative).

State. ``state()`` is the accumulator as plain data (JSON types, or numpy arrays for FID); it is
what ``--resume`` saves and what Ray workers send to the driver. ``load_state(state)`` puts it back;
``merge_state(state)`` merges another worker's state into this instance.

TorchMetrics' ``CharErrorRate`` is the model: the maths lives in plain functions, the class only
keeps sums and counts.
"""
from __future__ import annotations

import copy
import json
import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from evalkit.sample import EvalSample
from models.errors import TextsrError


class MetricUnavailable(TextsrError, RuntimeError):
    """A metric that cannot run here (its weights are missing, a package is absent). ``reason``
    is the short form written to summary.json, e.g. ``weights-missing: lpips_alex.pth (...)``."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class MetricStateError(TextsrError, ValueError):
    """A saved or received metric state that does not fit the metric (wrong type of value)."""


class ExactSum:
    """An exact, order-independent float sum (Shewchuk's algorithm, the one behind ``math.fsum``).

    The running sum is held as a short list of non-overlapping float64 *partials* whose exact
    (infinite-precision) sum is the exact sum of every value added. :meth:`value` is
    ``math.fsum(partials)``, the correctly rounded exact sum: the same float, bit for bit, whatever
    order the values came in and however they were split into parts that were :meth:`merge`\\ d.

    Non-finite values (a PSNR of ``inf`` for identical images) are kept apart, added with IEEE
    rules (``inf + inf = inf``, ``inf + -inf = nan``, ``nan`` absorbs), which are order-independent
    too; when there is one, :meth:`value` is that value.

    State (:meth:`state`): a plain list of floats (the partials, then the non-finite sum if any).
    Python's ``json`` writes ``inf``/``nan`` as ``Infinity``/``NaN`` and reads them back.
    """

    __slots__ = ("partials", "special")

    def __init__(self, values: Iterable[float] = ()):
        self.partials: list[float] = []
        self.special = 0.0  # sum of the non-finite values (0.0 when there is none)
        for v in values:
            self.add(v)

    def add(self, x: float) -> None:
        """Add one value (anything ``float()`` takes)."""
        x = float(x)
        if not math.isfinite(x):
            self.special += x
            return
        # Shewchuk / Python's msum recipe: fold x through the partials, keeping each rounding error
        partials, i = self.partials, 0
        for y in partials:
            if abs(x) < abs(y):
                x, y = y, x
            hi = x + y
            lo = y - (hi - x)
            if lo:
                partials[i] = lo
                i += 1
            x = hi
        partials[i:] = [x]

    def merge(self, other: ExactSum) -> None:
        """Add everything ``other`` holds (its partials sum exactly to its exact sum)."""
        for p in list(other.partials):
            self.add(p)
        self.special += other.special

    def value(self) -> float:
        """The correctly rounded exact sum (``inf``/``nan`` when a non-finite value was added)."""
        if self.special != 0.0:  # inf, -inf or nan (nan != 0.0 is True)
            return self.special
        return math.fsum(self.partials)

    def state(self) -> list[float]:
        return list(self.partials) + ([self.special] if self.special != 0.0 else [])

    @classmethod
    def from_state(cls, state: Iterable[float]) -> ExactSum:
        s = cls()
        for v in state:
            s.add(v)
        return s

    def __float__(self) -> float:
        return self.value()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ExactSum):
            return NotImplemented
        a, b = self.value(), other.value()
        return a == b or (math.isnan(a) and math.isnan(b))

    def __repr__(self) -> str:
        return f"ExactSum({self.value()!r})"


def _json_able(v: Any) -> bool:
    try:
        json.dumps(v)
    except (TypeError, ValueError):
        return False
    return True


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

    def merge(self, other: Metric) -> None:
        raise NotImplementedError

    # -- state -------------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """The accumulator as plain data: every attribute that is JSON data (networks, engines and
        functions are not), an :class:`ExactSum` as its list of partials, a numpy array as a copy
        (FID's statistics; a runner saves those beside the JSON, e.g. in an ``.npz``)."""
        out: dict[str, Any] = {}
        for k, v in vars(self).items():
            if isinstance(v, ExactSum):
                out[k] = v.state()
            elif isinstance(v, np.ndarray):
                out[k] = v.copy()
            elif _json_able(v):
                out[k] = v
        return out

    def load_state(self, state: dict[str, Any]) -> None:
        """Put back what :meth:`state` gave (also after a JSON round trip: lists for tuples and
        arrays). Every value is a fresh object, never shared with ``state``."""
        for k, v in state.items():
            cur = getattr(self, k, None)
            if isinstance(cur, ExactSum):
                if isinstance(v, ExactSum):
                    v = v.state()
                if not isinstance(v, (list, tuple)):
                    raise MetricStateError(f"{self.name}: state {k!r} must be a list of floats (ExactSum "
                                           f"partials), got {type(v).__name__}")
                setattr(self, k, ExactSum.from_state(v))
            elif isinstance(cur, np.ndarray):
                setattr(self, k, np.array(v, dtype=cur.dtype))
            elif isinstance(cur, tuple):
                setattr(self, k, tuple(v))
            else:
                setattr(self, k, copy.deepcopy(v))

    def merge_state(self, state: dict[str, Any]) -> None:
        """Merge another worker's :meth:`state` into this one: a shallow copy of this metric (same
        networks, engines and settings) is reset, given ``state`` and merged in."""
        other = copy.copy(self)
        other.reset()  # fresh accumulators, so nothing is shared with self
        other.load_state(state)
        self.merge(other)


class MeanMetric(Metric):
    """A metric whose dataset value is the mean of per-image values (PSNR, LPIPS, NIQE …).
    Subclasses implement ``value(sample) -> float | None``. Images whose value is None (e.g. no
    text region) are counted in ``skipped`` and left out of the mean. ``total`` is an
    :class:`ExactSum`: the mean is ``correctly rounded sum / count``, the same for any order or
    split of the images."""

    def __init__(self):
        self.reset()

    def value(self, sample: EvalSample) -> float | None:
        raise NotImplementedError

    def update(self, sample: EvalSample) -> dict[str, float | None]:
        v = self.value(sample)
        if v is None:
            self.skipped += 1
        else:
            self.total.add(float(v))
            self.count += 1
        return {self.name: None if v is None else float(v)}

    def compute(self) -> dict[str, float | None]:
        return {self.name: self.total.value() / self.count if self.count else None}

    def reset(self) -> None:
        self.total, self.count, self.skipped = ExactSum(), 0, 0

    def merge(self, other: MeanMetric) -> None:
        if type(other) is not type(self):
            raise TypeError(f"cannot merge {type(other).__name__} into {type(self).__name__}")
        self.total.merge(other.total)
        self.count += other.count
        self.skipped += other.skipped
