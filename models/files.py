"""Files, once for every floor: image suffixes, content hashes and atomic writes.

``synth``, ``evalkit``, ``models`` and ``pipelines`` all read image folders, verify files by sha256
and write files that a kill must never leave half-written. These helpers are the one copy.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# What counts as an image file, everywhere (compared lower-cased).
IMAGE_EXTS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"})


def is_image_file(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTS


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """The sha256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


_SHA_MEMO: dict[tuple[str, int, int], str] = {}


def file_digest(path: str | os.PathLike) -> str:
    """:func:`sha256_file`, memoised in this process by (resolved path, size, mtime_ns): a file that
    is rewritten (new size or mtime) is hashed again, so a digest always describes the bytes on
    disk. Use it for cache keys and weights identities; it reads each unchanged file once."""
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _SHA_MEMO:
        _SHA_MEMO[key] = sha256_file(p)
    return _SHA_MEMO[key]


TMP_SUFFIX = ".tmp"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class CostThrottle:
    """When a periodic checkpoint write (a build manifest, a run's resume state) is due: once at
    least ``factor`` times its last write's duration has passed since that write ended — after
    every event while the write is cheap, less often as it grows, so writing never takes more than
    about ``1/factor`` of a job's time (a whole-file rewrite per event would be quadratic)."""

    def __init__(self, factor: float = 20.0):
        self.factor = factor
        self.ended = float("-inf")
        self.cost = 0.0

    def due(self) -> bool:
        import time

        return time.monotonic() - self.ended >= self.factor * self.cost

    @contextlib.contextmanager
    def timing(self) -> Iterator[None]:
        import time

        t0 = time.monotonic()
        yield
        self.ended = time.monotonic()
        self.cost = self.ended - t0


def is_temp_name(name: str) -> bool:
    """A temp file of :func:`atomic_path` / :meth:`Location.atomic_open` (``.<name>.<random>.tmp``)."""
    return name.startswith(".") and name.endswith(TMP_SUFFIX)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block ends without an exception the file
    written there is fsynced and renamed onto ``path`` (``os.replace``), else it is removed.
    Readers see the old file or the whole new one, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it 0600; the file gets what open() would give it
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write(path: str | os.PathLike, data: bytes | str) -> Path:
    """Write ``data`` (bytes, or str as UTF-8) to ``path`` atomically (see :func:`atomic_path`)."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    with atomic_path(path) as tmp:
        tmp.write_bytes(raw)
    return Path(path)


def write_json_atomic(path: str | os.PathLike, data: Any) -> Path:
    """``data`` as indented UTF-8 JSON, written atomically."""
    return atomic_write(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


# -- a directory that may be remote -------------------------------------------------------------
def is_url(where: str | os.PathLike) -> bool:
    """True for an fsspec URL (``s3://…``, ``gs://…``, ``memory://…``); ``file://`` counts as local."""
    s = str(where)
    return "://" in s and not s.startswith("file://")


class HashingWriter:
    """A write-only file wrapper that hashes (sha256) and counts the bytes as they pass, so a file's
    digest is known when it is closed without reading it back. ``tell()`` is the bytes written
    (what ``tarfile`` asks for)."""

    def __init__(self, f):
        self._f = f
        self._h = hashlib.sha256()
        self.size = 0

    def write(self, data) -> int:
        self._h.update(data)
        self.size += len(data)
        return self._f.write(data)

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        self._f.flush()

    def hexdigest(self) -> str:
        return self._h.hexdigest()


class Location:
    """A directory named by a local path or any fsspec URL (``s3://bucket/corpus``,
    ``gs://…``, ``memory://…``), with the few operations batch jobs need and atomic writes on both:

    - local: a unique temp file beside the target, fsynced, then ``os.replace``;
    - fsspec: a unique temp object beside the target, then ``fs.mv`` onto it (object stores publish
      an object whole when its upload completes, so readers never see a part either).

    Temp names are :func:`atomic_path`'s ``.<name>.<random>.tmp``: two attempts at the same file (a
    task retried after a node was lost while the first still ran) never write into each other;
    :meth:`remove_temps` sweeps what killed attempts left."""

    def __init__(self, where: str | os.PathLike):
        s = str(where)
        if s.startswith("file://"):
            s = s[len("file://"):]
        self.where = s
        self.fs = None
        if is_url(s):
            import fsspec

            self.fs, self.root = fsspec.core.url_to_fs(s)
            self.root = self.root.rstrip("/")
        else:
            self.root = str(Path(s))

    def __repr__(self) -> str:
        return f"Location({self.where!r})"

    def __str__(self) -> str:
        return self.where

    def __reduce__(self):  # fsspec filesystems re-create themselves from the URL in each process
        return (Location, (self.where,))

    @property
    def local(self) -> Path | None:
        return None if self.fs is not None else Path(self.root)

    def path(self, rel: str = "") -> str:
        """The full local path or URL of ``rel`` (a ``/``-separated relative path)."""
        if not rel:
            return self.where
        return str(Path(self.root) / rel) if self.fs is None else f"{self.where.rstrip('/')}/{rel}"

    def _p(self, rel: str) -> str:
        return str(Path(self.root) / rel) if self.fs is None else (f"{self.root}/{rel}" if rel else self.root)

    def isfile(self, rel: str = "") -> bool:
        return Path(self._p(rel)).is_file() if self.fs is None else self.fs.isfile(self._p(rel))

    def isdir(self, rel: str = "") -> bool:
        return Path(self._p(rel)).is_dir() if self.fs is None else self.fs.isdir(self._p(rel))

    def exists(self, rel: str = "") -> bool:
        return Path(self._p(rel)).exists() if self.fs is None else self.fs.exists(self._p(rel))

    def size(self, rel: str) -> int:
        return Path(self._p(rel)).stat().st_size if self.fs is None else int(self.fs.size(self._p(rel)))

    def read_bytes(self, rel: str) -> bytes:
        return Path(self._p(rel)).read_bytes() if self.fs is None else self.fs.cat_file(self._p(rel))

    def sha256(self, rel: str) -> str:
        if self.fs is None:
            return sha256_file(self._p(rel))
        h = hashlib.sha256()
        with self.fs.open(self._p(rel), "rb") as f:
            while block := f.read(1 << 20):
                h.update(block)
        return h.hexdigest()

    def makedirs(self, rel: str = "") -> None:
        if self.fs is None:
            Path(self._p(rel)).mkdir(parents=True, exist_ok=True)
        else:
            self.fs.makedirs(self._p(rel), exist_ok=True)

    def listdir(self, rel: str = "") -> list[str]:
        """Names (not paths) of the files directly in ``rel``; [] when it does not exist."""
        if self.fs is None:
            d = Path(self._p(rel))
            return sorted(p.name for p in d.iterdir() if p.is_file()) if d.is_dir() else []
        if not self.fs.isdir(self._p(rel)):
            return []
        return sorted(Path(e["name"]).name for e in self.fs.ls(self._p(rel), detail=True) if e["type"] == "file")

    def walk(self) -> list[str]:
        """Relative paths (``/``-separated) of every file under this directory, in ``os.walk`` order
        with sorted names (a directory's files, then its sub-directories, each by name) — the same
        order for a local tree and for its copy behind a URL."""
        if self.fs is None:
            out = []
            for dirpath, dirnames, filenames in os.walk(self.root):
                dirnames.sort()
                rel = os.path.relpath(dirpath, self.root)
                out += [f if rel == "." else f"{rel}/{f}".replace(os.sep, "/") for f in sorted(filenames)]
            return out
        base = self.root.rstrip("/") + "/"
        rels = [p[len(base):] for p in self.fs.find(self.root) if p.startswith(base)]

        def order(rel: str):
            *dirs, name = rel.split("/")
            return [(1, d) for d in dirs] + [(0, name)]
        return sorted(rels, key=order)

    def remove(self, rel: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            if self.fs is None:
                os.unlink(self._p(rel))
            else:
                self.fs.rm(self._p(rel))

    def remove_temps(self, rel_dir: str) -> int:
        """Delete the temp files killed writers left in ``rel_dir``; returns how many."""
        names = [n for n in self.listdir(rel_dir) if is_temp_name(n)]
        for n in names:
            self.remove(f"{rel_dir}/{n}" if rel_dir else n)
        return len(names)

    @contextlib.contextmanager
    def atomic_open(self, rel: str) -> Iterator[HashingWriter]:
        """A binary file to write ``rel`` through; published whole when the block ends without an
        exception, discarded otherwise. The yielded writer knows the bytes' sha256 and size."""
        if self.fs is None:
            with atomic_path(self._p(rel)) as tmp, open(tmp, "wb") as f:
                yield HashingWriter(f)
            return
        import uuid

        final = self._p(rel)
        self.fs.makedirs(final.rsplit("/", 1)[0], exist_ok=True)
        head, _, name = final.rpartition("/")
        tmp = f"{head}/.{name}.{uuid.uuid4().hex[:12]}{TMP_SUFFIX}"  # atomic_path's naming
        f = self.fs.open(tmp, "wb")
        try:
            yield HashingWriter(f)
            f.close()
            self.fs.mv(tmp, final)
        except BaseException:
            with contextlib.suppress(Exception):
                f.close()
            with contextlib.suppress(Exception):
                self.fs.rm(tmp)
            raise

    def write_bytes(self, rel: str, data: bytes) -> None:
        """``data`` into ``rel`` atomically."""
        with self.atomic_open(rel) as f:
            f.write(data)

    def write_json(self, rel: str, data: Any) -> None:
        self.write_bytes(rel, (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
