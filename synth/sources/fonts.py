"""Offline font discovery for rendered text, with per-font glyph coverage.

Where fonts come from, in this order (the first copy of a family/style wins):

1. directories named in ``$TEXTSR_FONT_DIRS`` (``os.pathsep``-separated);
2. system font directories (``/usr/share/fonts``, ``/usr/local/share/fonts``, ``~/.local/share/fonts``,
   ``~/.fonts``): DejaVu, Noto CJK, WenQuanYi;
3. matplotlib's bundled DejaVu (``matplotlib/mpl-data/fonts/ttf``), located without importing matplotlib;
4. the PyPI package ``paperang-p2-fonts-cjk`` (WenQuanYi Micro Hei), located via ``importlib.metadata``.

Only an allow-list of real text faces is used. Fonts that map every code point to a placeholder
(matplotlib's ``LastResortHE``), math/symbol faces (``cmex10``, STIX size variants, DejaVu Math) and
partial "Display" faces are never picked: a glyph shown as a tofu box would teach a model garbage.
Coverage is read from each face's cmap with fontTools, once per process.
"""

from __future__ import annotations

import fnmatch
import functools
import importlib.metadata
import importlib.util
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from models.errors import TextsrError

FONT_DIRS_ENV = "TEXTSR_FONT_DIRS"

SYSTEM_FONT_DIRS: tuple[str, ...] = (
    "/usr/share/fonts",
    "/usr/local/share/fonts",
    "~/.local/share/fonts",
    "~/.fonts",
)

CJK_FONT_PACKAGE = "paperang-p2-fonts-cjk"

# Real text faces, matched case-insensitively against the file name.
_ALLOWED = (
    "dejavusans.ttf",
    "dejavusans-*.ttf",
    "dejavusanscondensed*.ttf",
    "dejavusansmono*.ttf",
    "dejavuserif.ttf",
    "dejavuserif-*.ttf",
    "dejavuserifcondensed*.ttf",
    "notosanscjk*.tt[cf]",
    "notoserifcjk*.tt[cf]",
    "notosanscjk*.otf",
    "notoserifcjk*.otf",
    "notosanssc-*.[ot]tf",
    "notoserifsc-*.[ot]tf",
    "wqy-microhei*.tt[cf]",
    "wqy-zenhei*.tt[cf]",
)
# DejaVuSans-ExtraLight renders hair-thin strokes whose coverage rarely reaches 0.5 at small sizes.
_DENIED = ("*math*", "*display*", "*extralight*", "lastresort*")

# Noto CJK collections hold JP/KR/SC/TC/HK faces with identical cmaps; Japanese/Korean glyph shapes are
# wrong for Chinese text, so only the Chinese faces are kept.
_NON_CHINESE_FACE_SUFFIXES = (" jp", " kr")

# A face counts as CJK when it covers these common hanzi.
_CJK_PROBE = "的是中国人我们有大年"


@dataclass(frozen=True)
class Font:
    """One font face.

    path: absolute path of the font file; index: face number inside a .ttc collection (0 otherwise);
    family/style: from the font's name table; codepoints: every code point its cmap maps.
    Equality and hashing use (path, index) only.
    """

    path: str
    index: int = 0
    family: str = field(default="", compare=False)
    style: str = field(default="", compare=False)
    codepoints: frozenset[int] = field(default=frozenset(), compare=False, repr=False)

    @property
    def name(self) -> str:
        """File name, with ``#index`` for faces after the first of a collection."""
        base = os.path.basename(self.path)
        return f"{base}#{self.index}" if self.index else base

    @property
    def is_cjk(self) -> bool:
        return all(ord(c) in self.codepoints for c in _CJK_PROBE)

    def covers(self, text: str) -> bool:
        """True when the cmap has a glyph for every non-whitespace character of ``text``."""
        cps = self.codepoints
        return all(ord(c) in cps for c in text if not c.isspace())


class FontNotFoundError(TextsrError, FileNotFoundError):
    """No usable font file: says where we looked and what to install."""


def fonts_for(text: str, fonts: Iterable[Font]) -> list[Font]:
    """The fonts among ``fonts`` whose cmap covers every non-space character of ``text`` (order kept)."""
    chars = {ord(c) for c in text if not c.isspace()}
    return [f for f in fonts if chars <= f.codepoints]


@functools.cache
def load_fonts(path: str | os.PathLike[str]) -> tuple[Font, ...]:
    """Every face of one font file (.ttf/.otf: one face; .ttc/.otc: all), with cmap coverage.

    Raises FontNotFoundError naming the path when it does not exist, ValueError when fontTools cannot
    read it.
    """
    from fontTools.ttLib import TTCollection, TTFont, TTLibError

    p = Path(path).expanduser()
    if not p.is_file():
        raise FontNotFoundError(
            f"font file {str(p)!r} does not exist; pass an existing .ttf/.otf/.ttc path "
            f"(or leave the font list empty to use the discovered fonts)"
        )
    p = p.resolve()
    try:
        if p.suffix.lower() in (".ttc", ".otc"):
            faces = list(TTCollection(str(p), lazy=True).fonts)
        else:
            faces = [TTFont(str(p), lazy=True)]
    except (TTLibError, OSError, AssertionError) as e:
        raise ValueError(f"cannot read font {str(p)!r} with fontTools: {e}") from e
    out = []
    for i, face in enumerate(faces):
        names = face["name"]
        family = names.getBestFamilyName() or p.stem
        style = names.getBestSubFamilyName() or "Regular"
        cmap = face.getBestCmap() or {}
        out.append(Font(str(p), i, family, style, frozenset(cmap)))
    return tuple(out)


def _allowed(filename: str) -> bool:
    n = filename.lower()
    return any(fnmatch.fnmatch(n, a) for a in _ALLOWED) and not any(
        fnmatch.fnmatch(n, d) for d in _DENIED
    )


def _matplotlib_font_dir() -> Path | None:
    # find_spec on a top-level package locates it without importing it (matplotlib imports slowly).
    spec = importlib.util.find_spec("matplotlib")
    if spec is None or not spec.submodule_search_locations:
        return None
    return (
        Path(next(iter(spec.submodule_search_locations))) / "mpl-data" / "fonts" / "ttf"
    )


def _package_font_files(dist: str) -> list[Path]:
    try:
        files = importlib.metadata.files(dist) or []
    except importlib.metadata.PackageNotFoundError:
        return []
    return [
        Path(f.locate())
        for f in files
        if f.suffix.lower() in (".ttf", ".ttc", ".otf", ".otc")
    ]


def font_search_locations() -> list[str]:
    """Where :func:`discover_fonts` looks, in order (for error messages and logs)."""
    env = [d for d in os.environ.get(FONT_DIRS_ENV, "").split(os.pathsep) if d]
    mpl = _matplotlib_font_dir()
    return [
        *(f"${FONT_DIRS_ENV}: {d}" for d in env),
        *SYSTEM_FONT_DIRS,
        f"matplotlib: {mpl}" if mpl else "matplotlib: (not installed)",
        f"PyPI package {CJK_FONT_PACKAGE}",
    ]


def _candidate_files() -> list[Path]:
    dirs = [
        Path(d).expanduser()
        for d in os.environ.get(FONT_DIRS_ENV, "").split(os.pathsep)
        if d
    ]
    dirs += [Path(d).expanduser() for d in SYSTEM_FONT_DIRS]
    mpl = _matplotlib_font_dir()
    if mpl is not None:
        dirs.append(mpl)
    files: list[Path] = []
    for d in dirs:
        if not d.is_dir():
            continue
        for root, subdirs, names in os.walk(d):
            subdirs.sort()
            files += [Path(root) / n for n in sorted(names) if _allowed(n)]
    files += _package_font_files(CJK_FONT_PACKAGE)
    return files


@functools.lru_cache(maxsize=1)
def discover_fonts() -> tuple[Font, ...]:
    """All allowed font faces found offline, deduplicated by (family, style), sorted by (family, style).

    The sort makes the list, and so which font a seeded sample picks, independent of directory order.
    Raises FontNotFoundError (naming every place looked and what to install) when none is found.
    """
    seen: dict[tuple[str, str], Font] = {}
    for f in _candidate_files():
        try:
            faces = load_fonts(str(f))
        except (FontNotFoundError, ValueError):
            continue  # a broken file in a system dir must not stop discovery
        for face in faces:
            if any(face.family.lower().endswith(s) for s in _NON_CHINESE_FACE_SUFFIXES):
                continue
            seen.setdefault((face.family, face.style), face)
    if not seen:
        raise FontNotFoundError(
            "no usable font found; looked in: "
            + "; ".join(font_search_locations())
            + ". Install one of: `pip install matplotlib` (DejaVu, Latin), "
            f"`pip install {CJK_FONT_PACKAGE}` (WenQuanYi Micro Hei, Chinese+Latin), "
            "`apt-get install fonts-dejavu-core fonts-noto-cjk`, "
            f"or point ${FONT_DIRS_ENV} at a folder of .ttf/.ttc files."
        )
    return tuple(
        sorted(seen.values(), key=lambda f: (f.family, f.style, f.path, f.index))
    )


def resolve_fonts(
    paths: Sequence[str | os.PathLike[str]] | None = None,
) -> tuple[Font, ...]:
    """``paths`` given: every face of those files (missing file -> FontNotFoundError naming it);
    otherwise :func:`discover_fonts`."""
    if not paths:
        return discover_fonts()
    out: list[Font] = []
    for p in paths:
        out += load_fonts(str(p))
    return tuple(out)
