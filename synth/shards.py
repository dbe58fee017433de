"""Webdataset shards written atomically, and the build manifest.

A shard is a plain POSIX tar (what ``webdataset.WebDataset`` reads) whose members are
``<key>.<field>``. Headers are fixed (mtime 0, uid/gid 0, mode 0644) so the same samples give the
same bytes. A shard is written to a temp file beside it and published only when complete
(local: fsynced and renamed; fsspec URL: moved into place), through
:meth:`models.files.Location.atomic_open`, which hashes the bytes as they are written: a killed
writer leaves either a whole shard or none, and nobody reads a shard back to learn its sha256.

A build directory (``out``) is a local path or any fsspec URL (``s3://bucket/corpus``).
"""
from __future__ import annotations

import contextlib
import io
import json
import tarfile
from pathlib import Path

from models.errors import TextsrError
from models.files import Location

SHARD_PATTERN = "{name}-{index:06d}.tar"
SHARDS_DIR = "shards"
MANIFEST = "manifest.json"


def shard_name(name: str, index: int) -> str:
    """A shard's path relative to its build directory (``shards/ftsr-000003.tar``)."""
    return f"{SHARDS_DIR}/{SHARD_PATTERN.format(name=name, index=index)}"


def shard_path(out: Path, name: str, index: int) -> Path:
    return Path(out) / shard_name(name, index)


def _location(out) -> Location:
    return out if isinstance(out, Location) else Location(out)


class AtomicShardWriter:
    """Streams samples into one shard; ``close()`` publishes it and returns (count, sha256) — the
    digest of the bytes as written. ``path`` is a local path or an fsspec URL; or give ``location``
    (a :class:`~models.files.Location`) and ``path`` relative to it. Use as a context manager (an
    exception discards the temp file) or call ``close()``/``abort()``."""

    def __init__(self, path, location: Location | None = None):
        if location is None:
            head, _, name = str(path).rpartition("/")
            location, path = Location(head or "."), name
        self.location, self.rel = location, str(path)
        self._stack = contextlib.ExitStack()
        self._f = self._stack.enter_context(location.atomic_open(self.rel))
        self._tar = tarfile.open(fileobj=self._f, mode="w", format=tarfile.USTAR_FORMAT)
        self.count = 0

    @property
    def path(self) -> str:
        return self.location.path(self.rel)

    @property
    def size(self) -> int:
        """Bytes written so far (the whole shard after ``close()``)."""
        return self._f.size

    def write(self, key: str, members: dict[str, bytes]) -> None:
        if "." in key:
            raise ValueError(f"webdataset key {key!r} contains a dot; keys must not")
        for fieldname in sorted(members):
            data = members[fieldname]
            info = tarfile.TarInfo(f"{key}.{fieldname}")
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            self._tar.addfile(info, io.BytesIO(data))
        self.count += 1

    def close(self) -> tuple[int, str]:
        self._tar.close()  # end-of-archive blocks and padding, through the hashing writer
        self._stack.close()
        return self.count, self._f.hexdigest()

    def abort(self) -> None:
        err = RuntimeError("shard aborted")
        with contextlib.suppress(RuntimeError):
            self._stack.__exit__(RuntimeError, err, None)  # the temp file is removed

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self.abort()


class ManifestError(TextsrError, ValueError):
    """A build's manifest.json that cannot be read; names the file."""


class CorpusError(TextsrError, ValueError):
    """A directory that is not a usable ``synth build`` output; the message names it and why."""


def open_build(out, label: str = "") -> dict:
    """The manifest of the ``synth build`` output ``out`` (a path or URL); :class:`CorpusError`
    naming it (after ``label``, e.g. ``"--data"``) when it does not exist, is a file or holds no
    manifest."""
    loc = _location(out)
    who = f"{label} {out}".strip()
    if not loc.isdir():
        raise CorpusError(f"{who}: {'is a file' if loc.exists() else 'does not exist'}; give a synth build "
                          "output directory (holding manifest.json and shards/)")
    manifest = read_manifest(out)
    if manifest is None:
        raise CorpusError(f"{who}: no manifest.json — not a synth build output directory (run `synth build`)")
    return manifest


def build_shards(out, manifest: dict) -> list:
    """The shard files a build's manifest lists, in order (local ``Path``s, or URLs for a remote
    build); :class:`CorpusError` naming the first one that is missing."""
    loc = _location(out)
    for s in manifest.get("shards", []):
        if not loc.isfile(s["file"]):
            raise CorpusError(f"{loc.path(s['file'])}: listed in {loc.path(MANIFEST)} but missing; rebuild it "
                              "with `synth build ... --resume`")
    return [Path(loc.path(s["file"])) if loc.local is not None else loc.path(s["file"])
            for s in manifest.get("shards", [])]


def read_manifest(out) -> dict | None:
    """A build's manifest (``out`` a path, URL or Location), or None when it has none."""
    loc = _location(out)
    if not loc.isfile(MANIFEST):
        return None
    try:
        return json.loads(loc.read_bytes(MANIFEST).decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ManifestError(f"{loc.path(MANIFEST)}: corrupt manifest ({e}); delete the output dir or fix the file") from None
