"""The project's own error type.

Every error that means "the input or the request is wrong" — an unknown name, a missing dataset
root or weights file, a malformed annotation, a run that cannot resume — derives from
:class:`TextsrError`. The command lines print such an error as one line and exit 2; anything else
is a bug and keeps its traceback (exit 1). The concrete classes also derive from the builtin type
that fits (``ValueError``, ``KeyError``, ``FileNotFoundError``), so library callers can catch
either.
"""
from __future__ import annotations


class TextsrError(Exception):
    """Bad input or a bad request; the message names what is wrong and how to fix it."""
