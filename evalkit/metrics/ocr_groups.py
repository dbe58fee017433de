"""OCR metrics reported per group of text annotations: ReasonText's perception / reasoning levels.

:class:`OCRByGroup` (``ocr_by_level``) hands each group's regions to its own :class:`OCRAccuracy`
and :class:`CharHallucination` (``evalkit.metrics.ocr``), so the maths is theirs, unchanged.
"""
from __future__ import annotations

import copy
from typing import Any

from evalkit.metrics.base import Metric
from evalkit.metrics.ocr import (
    CharHallucination,
    OCRAccuracy,
    RegionReads,
    _check_merge,
    _ci,
    _engine,
    _last_reads,
    read_regions,
    scored_texts,
)
from evalkit.sample import EvalSample
from models.ocr import OCREngine, OCRInputError


def _group_of(t, field: str) -> str | None:
    g = getattr(t, field, None)
    return str(g).strip().lower() if g not in (None, "") else None


class OCRByGroup(Metric):
    """OCR-A, word accuracy and character hallucination reported separately for each group of text
    annotations — ReasonText's ``level`` (``perception``: legible in the degraded input;
    ``reasoning``: only recoverable from context). Values in [0, 1]; OCR-A and word accuracy higher
    better, the character rates lower better.

    Grouping: a GT text instance belongs to group ``getattr(t, group_field)`` (lower-cased); only
    the ``groups`` listed are scored (instances without one or with another are counted in
    ``ocr_group_unlisted``). For each group ``g`` the image's scored regions (:func:`scored_texts`:
    don't-care and blank references left out) of that group are handed to a per-group
    :class:`OCRAccuracy` and :class:`CharHallucination`, so the maths is theirs, unchanged; their
    keys come back suffixed ``_<g>`` (``ocr_a_perception``, ``ocr_a_ci_reasoning``,
    ``char_hallucination_perception`` …; evidence lists are left to ``ocr_a``). Each region is
    recognised once per image for all groups (the crops of the whole image are read, then each
    group's subset is handed on).

    ``word_acc_<g>``: the fraction of the group's regions whose SR reading equals the reference
    after NFKC, case folding and whitespace removal (the ``ocr_a_ci`` strings); micro over all the
    group's regions of the dataset, also per image.

    Images without text annotations (``sample.texts is None``) cannot be grouped: every value is
    None and they are counted in ``ocr_group_images_unannotated``. State: the per-group metrics'
    own states (exact sums and ints), so workers merge bit-exactly.
    """

    name = "ocr_by_level"
    higher_is_better = True
    needs = frozenset({"sr"})

    def __init__(self, ocr: OCREngine | str | None = None, distance: str = "indel",
                 group_field: str = "level", groups: tuple[str, ...] | list[str] = ("perception", "reasoning"),
                 **_ignored: Any):
        groups = tuple(str(g).strip().lower() for g in groups)
        if not groups or len(set(groups)) != len(groups) or not all(g.isidentifier() for g in groups):
            raise OCRInputError(f"ocr_by_level: groups must be distinct names usable in a key "
                                f"(letters, digits, _), got {groups!r}")
        self.ocr = _engine(ocr)
        self.distance = distance
        self.group_field = str(group_field)
        self.groups = groups
        self._acc = {g: OCRAccuracy(self.ocr, distance=distance) for g in groups}
        self._char = {g: CharHallucination(self.ocr) for g in groups}
        self.reset()

    def settings(self) -> dict[str, Any]:
        return {
            "group_field": self.group_field,
            "groups": list(self.groups),
            "ocr_a": self._acc[self.groups[0]].settings(),
            "char_hallucination": self._char[self.groups[0]].settings(),
            "word_acc": "SR reading == reference after NFKC, case folding and whitespace removal; "
                        "micro over the group's regions",
            "keys": "each ocr_a / char_* key suffixed _<group>; annotations whose group is missing or "
                    "not listed are counted in ocr_group_unlisted and not scored",
        }

    def reset(self) -> None:
        for m in (*self._acc.values(), *self._char.values()):
            m.reset()
        self.word_hits = {g: 0 for g in self.groups}
        self.unlisted = 0
        self.images = 0
        self.unannotated = 0

    def update(self, sample: EvalSample) -> dict[str, Any]:
        if sample.texts is None:
            self.unannotated += 1
            return self._none() | {"ocr_group_unlisted": 0}
        scored = scored_texts(sample.texts)
        by_group = {g: [i for i, t in enumerate(scored) if _group_of(t, self.group_field) == g]
                    for g in self.groups}
        unlisted = len(scored) - sum(len(ix) for ix in by_group.values())
        reads = read_regions(sample, self.ocr) if scored else None
        saved = list(_last_reads)  # give the whole image's reads back to the next metric
        out: dict[str, Any] = {"ocr_group_unlisted": unlisted}
        try:
            for g, ix in by_group.items():
                sub = EvalSample(key=sample.key, sr=sample.sr, hr=sample.hr,
                                 texts=[scored[i] for i in ix])
                if ix:  # this group's share of the whole image's reads: no second recognition
                    _last_reads[:] = [(sub, sub.sr, sub.texts, None, self.ocr),
                                      _subset(reads, ix)]
                a = self._acc[g].update(sub)
                c = self._char[g].update(sub)
                hits = sum(_ci(e["read"]) == _ci(e["ref"]) for e in a["ocr_a_evidence"])
                self.word_hits[g] += hits
                out |= {f"{k}_{g}": v for k, v in (a | c).items() if not k.endswith(("_evidence", "_ref"))}
                out[f"word_acc_{g}"] = hits / len(ix) if ix else None
        finally:
            _last_reads[:] = saved
        self.unlisted += unlisted
        self.images += 1
        return out

    def _none(self) -> dict[str, Any]:
        return {f"{k}_{g}": None for g in self.groups
                for k in ("ocr_a", "ocr_a_ci", "word_acc", "char_hallucination")}

    def compute(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for g in self.groups:
            a, c = self._acc[g].compute(), self._char[g].compute()
            out |= {f"{k}_{g}": v for k, v in (a | c).items()}
            n = a["ocr_a_regions"]
            out[f"word_acc_{g}"] = self.word_hits[g] / n if n else None
        out |= {"ocr_group_unlisted": self.unlisted, "ocr_group_images": self.images,
                "ocr_group_images_unannotated": self.unannotated}
        return out

    def merge(self, other: OCRByGroup) -> None:
        _check_merge(self, other)
        for g in self.groups:
            self._acc[g].merge(other._acc[g])
            self._char[g].merge(other._char[g])
            self.word_hits[g] += other.word_hits[g]
        self.unlisted += other.unlisted
        self.images += other.images
        self.unannotated += other.unannotated

    # the per-group metrics are objects, not JSON data: their states are nested by name
    def state(self) -> dict[str, Any]:
        return {"groups": {g: {"ocr_a": self._acc[g].state(), "char": self._char[g].state()}
                           for g in self.groups},
                "word_hits": dict(self.word_hits), "unlisted": self.unlisted,
                "images": self.images, "unannotated": self.unannotated}

    def load_state(self, state: dict[str, Any]) -> None:
        from evalkit.metrics.base import MetricStateError

        if set(state.get("groups", {})) != set(self.groups):
            raise MetricStateError(f"ocr_by_level: state has groups {sorted(state.get('groups', {}))}, "
                                   f"this metric {sorted(self.groups)}")
        for g in self.groups:
            self._acc[g].load_state(state["groups"][g]["ocr_a"])
            self._char[g].load_state(state["groups"][g]["char"])
        self.word_hits = {g: int(state["word_hits"][g]) for g in self.groups}
        self.unlisted, self.images = int(state["unlisted"]), int(state["images"])
        self.unannotated = int(state["unannotated"])

    def __copy__(self) -> OCRByGroup:
        # the runner and merge_state copy a metric and reset the copy: the per-group metrics must
        # be copies too, or the reset would clear (and the merge double) this one's sums
        new = object.__new__(OCRByGroup)
        new.__dict__.update(self.__dict__)
        new._acc = {g: copy.copy(m) for g, m in self._acc.items()}
        new._char = {g: copy.copy(m) for g, m in self._char.items()}
        new.word_hits = dict(self.word_hits)
        return new


def _subset(reads: RegionReads, ix: list[int]) -> RegionReads:
    return RegionReads(reads.source, tuple(reads.refs[i] for i in ix), tuple(reads.preds[i] for i in ix),
                       tuple(reads.polygons[i] for i in ix), tuple(reads.confs[i] for i in ix))
