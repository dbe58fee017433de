"""Webdataset shards written atomically, and the build manifest.

A shard is a plain POSIX tar (what ``webdataset.WebDataset`` reads) whose members are
``<key>.<field>``. Headers are fixed (mtime 0, uid/gid 0, mode 0644) so the same samples give the
same bytes. A shard is written to ``<name>.tmp`` and renamed into place only when complete and
fsynced: a killed build leaves either a whole shard or none, never a truncated one.
"""
from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

from models.errors import TextsrError
from models.files import sha256_file

SHARD_PATTERN = "{name}-{index:06d}.tar"


def shard_path(out: Path, name: str, index: int) -> Path:
    return Path(out) / "shards" / SHARD_PATTERN.format(name=name, index=index)


class AtomicShardWriter:
    """Streams samples into one shard; ``close()`` renames it into place and returns
    (count, sha256). Use as a context manager: an exception discards the temp file."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.path.with_name(self.path.name + ".tmp")
        self._f = open(self.tmp, "wb")
        self._tar = tarfile.open(fileobj=self._f, mode="w", format=tarfile.USTAR_FORMAT)
        self.count = 0

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
        self._tar.close()
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.close()
        digest = sha256_file(self.tmp)
        os.replace(self.tmp, self.path)
        return self.count, digest

    def abort(self) -> None:
        try:
            self._tar.close()
            self._f.close()
        finally:
            self.tmp.unlink(missing_ok=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self.abort()


class ManifestError(TextsrError, ValueError):
    """A build's manifest.json that cannot be read; names the file."""


class CorpusError(TextsrError, ValueError):
    """A directory that is not a usable ``synth build`` output; the message names it and why."""


def open_build(out: Path, label: str = "") -> dict:
    """The manifest of the ``synth build`` output ``out``; :class:`CorpusError` naming it (after
    ``label``, e.g. ``"--data"``) when it does not exist, is a file or holds no manifest."""
    out = Path(out)
    who = f"{label} {out}".strip()
    if not out.is_dir():
        raise CorpusError(f"{who}: {'is a file' if out.exists() else 'does not exist'}; give a synth build "
                          "output directory (holding manifest.json and shards/)")
    manifest = read_manifest(out)
    if manifest is None:
        raise CorpusError(f"{who}: no manifest.json — not a synth build output directory (run `synth build`)")
    return manifest


def build_shards(out: Path, manifest: dict) -> list[Path]:
    """The shard files a build's manifest lists, in order; :class:`CorpusError` naming the first
    one that is missing."""
    shards = [Path(out) / s["file"] for s in manifest.get("shards", [])]
    for p in shards:
        if not p.is_file():
            raise CorpusError(f"{p}: listed in {Path(out) / 'manifest.json'} but missing; rebuild it "
                              "with `synth build ... --resume`")
    return shards


def read_manifest(out: Path) -> dict | None:
    p = Path(out) / "manifest.json"
    if not p.is_file():
        return None
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ManifestError(f"{p}: corrupt manifest ({e}); delete the output dir or fix the file") from None
