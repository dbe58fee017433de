"""String similarity for OCR scoring: normalised edit similarity and the TADiSR OCR-A ratio.

Plain functions on strings; metric classes that accumulate them live in ``evalkit``.
"""
from __future__ import annotations

import string
import unicodedata

import Levenshtein

from models.ocr.base import OCRInputError

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


# OCR-A's distances. "indel" is what python-Levenshtein's ``Levenshtein.ratio`` (the function called
# "Levenshtein ratio") uses: a substitution costs 2 (a deletion plus an insertion), so a wrong word
# of the right length scores 0. "levenshtein" is the plain unit-cost edit distance, under which the
# same wrong word scores 0.5: it rewards hallucinated glyphs, kept only to compare with runs that
# used it.
RATIO_DISTANCES = {
    "indel": "Levenshtein.ratio semantics: (|p|+|r|-indel(p,r))/(|p|+|r|), indel = "
             "Levenshtein.distance(p, r, weights=(1, 1, 2)) (insert 1, delete 1, substitute 2)",
    "levenshtein": "(|p|+|r|-lev(p,r))/(|p|+|r|), lev = Levenshtein.distance(p, r) (unit-cost "
                   "substitution: a same-length wrong word scores 0.5)",
}


def levenshtein_ratio(pred: str, gt: str, distance: str = "indel") -> float:
    """TADiSR's OCR-A box score ``(len(p) + len(g) - dist(p, g)) / (len(p) + len(g))`` in [0, 1].

    distance: ``"indel"`` (default) — ``dist`` is the indel distance (insertions and deletions
    only, a substitution costs 2), i.e. exactly python-Levenshtein's ``Levenshtein.ratio``: "HOTEL"
    vs "XQZJW" scores 0.0. ``"levenshtein"`` — ``dist`` is the unit-cost edit distance
    (``Levenshtein.distance``): the same pair scores 0.5.
    1.0 for two empty strings, 0.0 when exactly one is empty. Strings are compared as given (no
    normalisation).
    """
    total = len(pred) + len(gt)
    if total == 0:
        return 1.0
    if distance == "indel":
        dist = Levenshtein.distance(pred, gt, weights=(1, 1, 2))
    elif distance == "levenshtein":
        dist = Levenshtein.distance(pred, gt)
    else:
        raise OCRInputError(f"distance must be one of {sorted(RATIO_DISTANCES)}, got {distance!r}")
    return (total - dist) / total
