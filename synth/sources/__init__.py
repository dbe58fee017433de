"""Text sources for synthetic corpora: fonts, vocabulary and rendered text patches."""

from synth.sources.fonts import (
    Font,
    FontNotFoundError,
    discover_fonts,
    fonts_for,
    load_fonts,
    resolve_fonts,
)
from synth.sources.rendered import RenderConfig, TextRenderer
from synth.sources.words import PhraseConfig, sample_text, vocabulary

__all__ = [
    "Font",
    "FontNotFoundError",
    "PhraseConfig",
    "RenderConfig",
    "TextRenderer",
    "discover_fonts",
    "fonts_for",
    "load_fonts",
    "resolve_fonts",
    "sample_text",
    "vocabulary",
]
