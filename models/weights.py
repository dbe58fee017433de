"""The one weights resolver every model, OCR engine, segmenter and metric uses.

Order (timm's fixed order): explicit path -> the project weights dir (``TEXTSR_WEIGHTS``, default
``~/.cache/textsr/weights``) -> the Hugging Face cache (``HF_HOME`` / ``HF_HUB_CACHE``, offline
lookup only) -> a download, only when allowed (``allow_download=True`` or
``TEXTSR_ALLOW_DOWNLOAD=1``). Nothing downloads at import or inside a constructor without that
permission. A missing file raises :class:`WeightsMissingError`, naming the file, every place
looked, its source, its sha256 when known, and the command that fetches it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from models.files import sha256_file
from models.errors import TextsrError


@dataclass(frozen=True)
class WeightsFile:
    """One file a component needs.

    filename: the name in our weights dir (and in the HF repo when ``hf_repo`` is set).
    hf_repo:  Hugging Face repo id holding ``hf_filename`` (defaults to ``filename``), or None.
    url:      a direct download URL, or None.
    sha256:   expected digest, or None when not published.
    homepage: where the authors publish it when there is no scriptable download (a Google Drive
              folder named in their README), or None.
    """

    filename: str
    hf_repo: str | None = None
    hf_filename: str | None = None
    url: str | None = None
    sha256: str | None = None
    homepage: str | None = None

    @property
    def source(self) -> str:
        if self.hf_repo:
            return f"huggingface.co/{self.hf_repo} ({self.hf_filename or self.filename})"
        if self.url:
            return self.url
        return f"{self.homepage} (no scriptable download)" if self.homepage else "no public source known"


class WeightsMissingError(TextsrError, FileNotFoundError):
    def __init__(self, wf: WeightsFile, looked: list[str], why: str = "not found"):
        self.weights_file = wf
        self.looked = looked
        lines = [f"weights file {wf.filename!r} {why}.", "Looked in:"]
        lines += [f"  - {p}" for p in looked]
        lines.append(f"Source: {wf.source}")
        if wf.sha256:
            lines.append(f"sha256: {wf.sha256}")
        lines.append(f"Fetch it with: {fetch_command(wf)}")
        lines.append("or pass the file's path explicitly (weights=PATH / --weights PATH).")
        super().__init__("\n".join(lines))


class WeightsChecksumError(TextsrError, ValueError):
    pass


def weights_dir() -> Path:
    env = os.environ.get("TEXTSR_WEIGHTS")
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "textsr" / "weights"


def hf_cache_dir() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or str(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "huggingface")
    return Path(home).expanduser() / "hub"


def downloads_allowed(allow_download: bool | None = None) -> bool:
    if allow_download is not None:
        return allow_download
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        return False
    return os.environ.get("TEXTSR_ALLOW_DOWNLOAD", "") in ("1", "true", "yes")


def fetch_command(wf: WeightsFile) -> str:
    dest = weights_dir()
    if wf.hf_repo:
        return (f"huggingface-cli download {wf.hf_repo} {wf.hf_filename or wf.filename} "
                f"--local-dir {dest}")
    if wf.url:
        return f"curl -L -o {dest / wf.filename} {wf.url}"
    if wf.homepage:
        return f"(download it from {wf.homepage} and place it at {dest / wf.filename})"
    return f"(no public download; place the file at {dest / wf.filename})"


def _verify(path: Path, wf: WeightsFile) -> Path:
    if wf.sha256 and sha256_file(path) != wf.sha256:
        raise WeightsChecksumError(
            f"{path}: sha256 does not match {wf.sha256} expected for {wf.filename} ({wf.source}); "
            f"delete it and fetch again with: {fetch_command(wf)}")
    return path


def _hf_cached(wf: WeightsFile) -> tuple[Path | None, str]:
    """Look in the HF hub cache layout: models--org--name/snapshots/<rev>/<file>."""
    if not wf.hf_repo:
        return None, ""
    repo_dir = hf_cache_dir() / ("models--" + wf.hf_repo.replace("/", "--"))
    name = wf.hf_filename or wf.filename
    snaps = repo_dir / "snapshots"
    if snaps.is_dir():
        for snap in sorted(snaps.iterdir()):
            cand = snap / name
            if cand.is_file():
                return cand, str(snaps / "*" / name)
    return None, str(snaps / "*" / name)


def resolve(wf: WeightsFile, explicit: str | os.PathLike | None = None,
            allow_download: bool | None = None) -> Path:
    """Return a local path to ``wf``, checking its sha256 when known, or raise."""
    looked: list[str] = []
    if explicit is not None:
        p = Path(explicit).expanduser()
        if p.is_dir():
            p = p / wf.filename
        if p.is_file():
            return _verify(p, wf)
        looked.append(f"{p} (explicit path)")
        raise WeightsMissingError(wf, looked)
    local = weights_dir() / wf.filename
    if local.is_file():
        return _verify(local, wf)
    looked.append(f"{local} (TEXTSR_WEIGHTS)")
    cached, pattern = _hf_cached(wf)
    if cached is not None:
        return _verify(cached, wf)
    if pattern:
        looked.append(f"{pattern} (Hugging Face cache)")
    if downloads_allowed(allow_download) and (wf.hf_repo or wf.url):
        return _verify(_download(wf), wf)
    looked.append("download not allowed (pass --allow-download or set TEXTSR_ALLOW_DOWNLOAD=1)")
    raise WeightsMissingError(wf, looked)


def _download(wf: WeightsFile) -> Path:
    dest = weights_dir()
    dest.mkdir(parents=True, exist_ok=True)
    if wf.hf_repo:
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(wf.hf_repo, wf.hf_filename or wf.filename))
    import shutil
    import urllib.request

    target = dest / wf.filename
    tmp = target.with_suffix(target.suffix + ".part")
    with urllib.request.urlopen(wf.url) as r, open(tmp, "wb") as f:  # noqa: S310 (user allowed it)
        shutil.copyfileobj(r, f)
    os.replace(tmp, target)
    return target


# -- folders (diffusers layout) -------------------------------------------------------------------
@dataclass(frozen=True)
class WeightsFolder:
    """A model stored as a folder (a diffusers pipeline: ``unet/``, ``vae/``, ``text_encoder/`` …).

    name:     the folder's name in our weights dir (``$TEXTSR_WEIGHTS/<name>``).
    hf_repo:  Hugging Face repo id whose snapshot is the folder, or None.
    required: files (relative paths) a usable copy must hold; a folder lacking one is skipped.
    allow_patterns: what a download fetches (the repo's other files, e.g. the 5 GB full
              checkpoints of SD repos, are left out), or None for the whole repo.
    """

    name: str
    hf_repo: str | None = None
    required: tuple[str, ...] = ()
    allow_patterns: tuple[str, ...] | None = None

    @property
    def source(self) -> str:
        return f"huggingface.co/{self.hf_repo}" if self.hf_repo else "no public source known"


class FolderMissingError(WeightsMissingError):
    """:class:`WeightsMissingError` for a folder: names it, every place looked, the repo, the command."""

    def __init__(self, wf: WeightsFolder, looked: list[str], why: str = "not found"):
        self.weights_file = wf
        self.looked = looked
        lines = [f"weights folder {wf.name!r} {why}."]
        if wf.required:
            lines.append(f"A usable copy holds: {', '.join(wf.required)}")
        lines.append("Looked in:")
        lines += [f"  - {p}" for p in looked]
        lines.append(f"Source: {wf.source}")
        lines.append(f"Fetch it with: {fetch_folder_command(wf)}")
        lines.append("or pass the folder explicitly.")
        FileNotFoundError.__init__(self, "\n".join(lines))


def fetch_folder_command(wf: WeightsFolder) -> str:
    dest = weights_dir() / wf.name
    if not wf.hf_repo:
        return f"(no public download; place the folder at {dest})"
    inc = "".join(f" --include {p!r}" for p in wf.allow_patterns or ())
    return f"huggingface-cli download {wf.hf_repo}{inc} --local-dir {dest}"


def _missing(folder: Path, wf: WeightsFolder) -> list[str]:
    return [r for r in wf.required if not (folder / r).is_file()]


def resolve_folder(wf: WeightsFolder, explicit: str | os.PathLike | None = None,
                   allow_download: bool | None = None) -> Path:
    """Return a local folder holding every file of ``wf.required``, or raise :class:`FolderMissingError`.

    Same order as :func:`resolve`: ``explicit`` (then nothing else is tried) -> ``$TEXTSR_WEIGHTS/<name>``
    -> the HF cache snapshot ``models--org--name/snapshots/*/`` (offline lookup) -> a snapshot
    download, only when allowed.
    """
    looked: list[str] = []
    if explicit is not None:
        p = Path(explicit).expanduser()
        if p.is_dir() and not _missing(p, wf):
            return p
        why = f"lacks {', '.join(_missing(p, wf))}" if p.is_dir() else "does not exist"
        looked.append(f"{p} (explicit path; {why})")
        raise FolderMissingError(wf, looked)
    local = weights_dir() / wf.name
    if local.is_dir() and not _missing(local, wf):
        return local
    looked.append(f"{local} (TEXTSR_WEIGHTS)" + (f"; lacks {', '.join(_missing(local, wf))}" if local.is_dir() else ""))
    if wf.hf_repo:
        snaps = hf_cache_dir() / ("models--" + wf.hf_repo.replace("/", "--")) / "snapshots"
        if snaps.is_dir():
            for snap in sorted(snaps.iterdir()):
                if snap.is_dir() and not _missing(snap, wf):
                    return snap
        looked.append(f"{snaps / '*'} (Hugging Face cache)")
    if downloads_allowed(allow_download) and wf.hf_repo:
        from huggingface_hub import snapshot_download

        got = Path(snapshot_download(wf.hf_repo, allow_patterns=list(wf.allow_patterns) if wf.allow_patterns else None))
        if _missing(got, wf):
            raise FolderMissingError(wf, looked + [f"{got} (downloaded; lacks {', '.join(_missing(got, wf))})"])
        return got
    looked.append("download not allowed (pass --allow-download or set TEXTSR_ALLOW_DOWNLOAD=1)")
    raise FolderMissingError(wf, looked)
