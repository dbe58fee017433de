"""Lazy name -> object registries, one per kind of component.

A registry maps lowercase-with-hyphens names to ``"module.path:Attr"`` strings, so listing is
cheap and nothing is imported until a name is asked for (pyiqa's ``register_lazy``, diffusers'
``_import_structure``). Unknown names raise with close matches; duplicate names are an error.
"""
from __future__ import annotations

import difflib
import importlib
from typing import Any, Iterable

from models.errors import TextsrError


class UnknownNameError(TextsrError, KeyError):
    """Raised for a name no registry entry has; the message lists close matches."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it plain
        return str(self.args[0])


class Registry:
    """A lazy table of one kind of component (``kind`` is used in messages only)."""

    def __init__(self, kind: str, table: dict[str, str] | None = None):
        self.kind = kind
        self._table: dict[str, str] = {}
        for name, target in (table or {}).items():
            self.register(name, target)

    def register(self, name: str, target: str) -> None:
        if name in self._table:
            raise ValueError(f"{self.kind} {name!r} is registered twice "
                             f"({self._table[name]} and {target})")
        if ":" not in target:
            raise ValueError(f"{self.kind} {name!r}: target {target!r} must be 'module.path:Attr'")
        self._table[name] = target

    def names(self, pattern: str | None = None) -> list[str]:
        import fnmatch
        names = sorted(self._table)
        return [n for n in names if pattern is None or fnmatch.fnmatch(n, pattern)]

    def __contains__(self, name: str) -> bool:
        return name in self._table

    def __iter__(self) -> Iterable[str]:
        return iter(self.names())

    def target(self, name: str) -> str:
        try:
            return self._table[name]
        except KeyError:
            close = difflib.get_close_matches(name, self._table, n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}{hint} (known: {', '.join(self.names())})") from None

    def get(self, name: str) -> Any:
        module, attr = self.target(name).split(":")
        return getattr(importlib.import_module(module), attr)

    def create(self, name: str, **kwargs: Any) -> Any:
        return self.get(name)(**kwargs)
