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


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block ends without an exception the file
    written there is fsynced and renamed onto ``path`` (``os.replace``), else it is removed.
    Readers see the old file or the whole new one, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
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
