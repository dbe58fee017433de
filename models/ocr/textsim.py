"""String similarity for OCR scoring: normalised edit similarity and the TADiSR OCR-A ratio.

Plain functions on strings; metric classes that accumulate them live in ``evalkit``.
"""
from __future__ import annotations

import string
import unicodedata

import Levenshtein

# ASCII punctuation plus the common full-width/CJK marks, which PP-OCR's zh+en dictionary emits.
_CJK_PUNCT = "，。、；：？！“”‘’（）《》〈〉【】「」『』…—～·"
_PUNCT = set(string.punctuation) | set(_CJK_PUNCT)


def normalize_text(s: str, ignore_case: bool = False, ignore_space: bool = False,
                   ignore_punct: bool = False) -> str:
    """NFKC-normalise ``s`` (full-width letters -> ASCII) and optionally fold case, drop whitespace
    and drop punctuation (ASCII and CJK, plus any Unicode category ``P*``)."""
    s = unicodedata.normalize("NFKC", s)
    if ignore_case:
        s = s.casefold()
    if ignore_space:
        s = "".join(ch for ch in s if not ch.isspace())
    if ignore_punct:
        s = "".join(ch for ch in s
                    if ch not in _PUNCT and not unicodedata.category(ch).startswith("P"))
    return s


def text_similarity(pred: str, gt: str, ignore_case: bool = False, ignore_space: bool = False,
                    ignore_punct: bool = False) -> float:
    """Normalised edit similarity ``1 - dist(pred, gt) / max(len(pred), len(gt))`` in [0, 1].

    1.0 for two empty strings (after the optional normalisation), 0.0 when exactly one is empty.
    This is 1 - NED, the Real-CE / ICDAR-2019 style score.
    """
    p = normalize_text(pred, ignore_case, ignore_space, ignore_punct)
    g = normalize_text(gt, ignore_case, ignore_space, ignore_punct)
    n = max(len(p), len(g))
    if n == 0:
        return 1.0
    return 1.0 - Levenshtein.distance(p, g) / n


def levenshtein_ratio(pred: str, gt: str) -> float:
    """TADiSR's OCR-A box score ``(len(p) + len(g) - dist(p, g)) / (len(p) + len(g))`` in [0, 1].

    Uses the plain (unit-cost) edit distance, so it is not ``Levenshtein.ratio`` (which counts a
    substitution as 2). 1.0 for two empty strings.
    """
    total = len(pred) + len(gt)
    if total == 0:
        return 1.0
    return (total - Levenshtein.distance(pred, gt)) / total
