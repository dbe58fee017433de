"""Vocabulary (from ``wordfreq``'s bundled lists, offline) and a short-phrase sampler for rendered text.

English: lowercase alphabetic words (apostrophes/hyphens inside allowed), single letters only "a"/"i".
Chinese: words made only of CJK Unified Ideographs (basic block + extension A). ``top_n_list`` reads
the bundled list directly; ``jieba`` is not needed for it.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Protocol

import numpy as np

SUPPORTED_LANGUAGES = ("en", "zh")

_EN_WORD = re.compile(r"[a-z]+(?:['\-][a-z]+)*")


def is_cjk(ch: str) -> bool:
    """True for a CJK Unified Ideograph (U+4E00–U+9FFF) or extension A (U+3400–U+4DBF)."""
    o = ord(ch)
    return 0x4E00 <= o <= 0x9FFF or 0x3400 <= o <= 0x4DBF


class PhraseSpec(Protocol):
    """What :func:`sample_text` reads from a config (``RenderConfig`` satisfies it)."""

    vocab_size: int
    words: tuple[int, int]
    digit_prob: float
    punct_prob: float


@dataclass(frozen=True)
class PhraseConfig:
    """Stand-alone phrase settings. vocab_size: top-N words per language; words: (min, max) words per
    phrase, inclusive; digit_prob / punct_prob: chance a phrase gets a number / punctuation."""

    vocab_size: int = 20000
    words: tuple[int, int] = (1, 3)
    digit_prob: float = 0.15
    punct_prob: float = 0.15


@functools.cache
def vocabulary(language: str, size: int = 20000) -> tuple[str, ...]:
    """The ``size`` most frequent wordfreq words of ``language`` that pass the printable filter
    (the result can be shorter than ``size``). Raises ValueError for an unsupported language."""
    if language not in SUPPORTED_LANGUAGES:
        raise ValueError(
            f"unsupported language {language!r}; expected one of {SUPPORTED_LANGUAGES}"
        )
    if size < 1:
        raise ValueError(f"vocabulary size must be >= 1, got {size}")
    from wordfreq import top_n_list

    raw = top_n_list(language, size)
    if language == "en":
        words = [
            w for w in raw if _EN_WORD.fullmatch(w) and (len(w) > 1 or w in ("a", "i"))
        ]
    else:
        words = [w for w in raw if w and all(is_cjk(c) for c in w)]
    if not words:
        raise RuntimeError(
            f"wordfreq returned no usable {language!r} words; is the wordfreq package intact?"
        )
    return tuple(words)


def _pick(rng: np.random.Generator, items: tuple[str, ...] | list[str]) -> str:
    return items[int(rng.integers(len(items)))]


def _number_en(rng: np.random.Generator) -> str:
    kind = int(rng.integers(6))
    if kind == 0:  # plain integer, mostly small
        return str(int(rng.integers(1, 10 ** int(rng.integers(1, 5)))))
    if kind == 1:  # price
        cur = _pick(rng, ("$", "$", "€", "£"))
        whole = int(rng.integers(1, 1000))
        return (
            f"{cur}{whole}"
            if rng.random() < 0.3
            else f"{cur}{whole}.{int(rng.integers(100)):02d}"
        )
    if kind == 2:  # year
        return str(int(rng.integers(1950, 2031)))
    if kind == 3:  # phone-like
        a, b, c = (
            int(rng.integers(200, 1000)),
            int(rng.integers(200, 1000)),
            int(rng.integers(10000)),
        )
        return _pick(rng, (f"{a}-{b}-{c:04d}", f"({a}) {b}-{c:04d}", f"{b}-{c:04d}"))
    if kind == 4:  # percent
        return f"{int(rng.integers(1, 100))}%"
    return (
        f"No.{int(rng.integers(1, 100))}"
        if rng.random() < 0.5
        else f"{int(rng.integers(1, 13))}:{int(rng.integers(60)):02d}"
    )


def _number_zh(rng: np.random.Generator) -> str:
    kind = int(rng.integers(4))
    if kind == 0:
        return (
            f"{int(rng.integers(1, 1000))}{_pick(rng, ('元', '号', '楼', '米', '个'))}"
        )
    if kind == 1:
        return f"{int(rng.integers(1950, 2031))}年"
    if kind == 2:
        return f"¥{int(rng.integers(1, 1000))}" + (
            f".{int(rng.integers(10))}" if rng.random() < 0.5 else ""
        )
    return f"{int(rng.integers(1000, 10000))}-{int(rng.integers(1000, 10000))}"


def _case_en(rng: np.random.Generator, words: list[str]) -> list[str]:
    u = rng.random()
    if u < 0.40:
        return words
    if u < 0.75:
        return [w[:1].upper() + w[1:] for w in words]
    return [w.upper() for w in words]


def _punctuate_en(rng: np.random.Generator, words: list[str]) -> list[str]:
    kind = int(rng.integers(6))
    if kind == 0 and len(words) >= 2:  # "salt & pepper"
        i = int(rng.integers(1, len(words)))
        return words[:i] + ["&"] + words[i:]
    if kind == 1 and len(words) >= 2:  # "well-known"
        i = int(rng.integers(len(words) - 1))
        return words[:i] + [words[i] + "-" + words[i + 1]] + words[i + 2 :]
    if kind == 2 and len(words) >= 2:  # "Note: open"  /  "red, blue"
        i = int(rng.integers(len(words) - 1))
        return words[:i] + [words[i] + _pick(rng, (":", ","))] + words[i + 1 :]
    if kind == 3 and "'" not in words[-1]:  # possessive
        return words[:-1] + [words[-1] + ("'S" if words[-1].isupper() else "'s")]
    return words[:-1] + [words[-1] + _pick(rng, ("!", ".", "!"))]


def sample_text(
    rng: np.random.Generator, language: str, cfg: PhraseSpec | None = None
) -> str:
    """A short phrase: ``cfg.words`` words from the top-``cfg.vocab_size`` vocabulary, uniformly.

    en: words joined by spaces, cased lower / Title / UPPER per phrase, with probability
    ``digit_prob`` a number (integer, price like "$12.99", year, phone-like, percent, time) inserted,
    with probability ``punct_prob`` one of - ' & . ! : , added.
    zh: words joined without spaces, kept to about 2–8 characters; digits as "12元", "2024年", "¥35".
    Uses only ``rng``; the same generator state gives the same phrase.
    """
    cfg = cfg or PhraseConfig()
    vocab = vocabulary(language, cfg.vocab_size)
    lo, hi = cfg.words
    n = int(rng.integers(lo, hi + 1))
    if language == "en":
        words = [_pick(rng, vocab) for _ in range(n)]
        words = _case_en(rng, words)
        if rng.random() < cfg.digit_prob:
            num = _number_en(rng)
            if len(words) >= hi:
                words[int(rng.integers(len(words)))] = num
            else:
                words.insert(int(rng.integers(len(words) + 1)), num)
        if rng.random() < cfg.punct_prob:
            words = _punctuate_en(rng, words)
        return " ".join(words)
    # zh: stop adding words once the phrase would pass 8 characters, but reach at least 2.
    text = _pick(rng, vocab)
    for _ in range(n - 1):
        w = _pick(rng, vocab)
        if len(text) + len(w) > 8:
            break
        text += w
    while len(text) < 2:
        text += _pick(rng, vocab)
    if rng.random() < cfg.digit_prob:
        num = _number_zh(rng)
        text = num + text if rng.random() < 0.5 else text + num
    if rng.random() < cfg.punct_prob:
        text += _pick(rng, ("！", "：", "！", "…"))
    return text
