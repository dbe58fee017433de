"""Version capture for everything the toolkit writes (build manifests, evaluation summaries)."""
from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path

# the packages whose versions can change a sample or a score
DEFAULT_PACKAGES = ("textsr-kit", "torch", "numpy", "opencv-python-headless", "pyiqa", "basicsr",
                    "rapidocr-onnxruntime", "rapidocr", "onnxruntime", "ray", "webdataset", "wordfreq",
                    "scikit-image", "diffusers", "peft", "python-Levenshtein")


def git_sha() -> str | None:
    """The commit of the checkout this code runs from, or None (a wheel install, no git)."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return sha or None


def versions(packages: tuple[str, ...] = DEFAULT_PACKAGES) -> dict[str, str]:
    """``{"python": …, <package>: <version> …, "git": <sha>}`` for the installed ones."""
    out = {"python": platform.python_version()}
    for pkg in packages:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    sha = git_sha()
    if sha:
        out["git"] = sha
    return out
