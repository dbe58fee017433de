"""ScreenSR, the real-world paired benchmark VOSR introduced.

Wu et al., "VOSR: A Vision-Only Generative Model for Image Super-Resolution", CVPR 2026
(arXiv 2604.03225); code https://github.com/cswry/VOSR (Apache-2.0); data: Hugging Face dataset
``CSWRY/ScreenSR`` and ModelScope ``LULALULALU/ScreenSR`` (terms on those hosting pages: the VOSR
README says downloadable data "may have separate terms").

Verified (cswry/VOSR @ 25fbf8e, README.md and inference_vosr.py):

* ScreenSR is a *paired* LR/HR benchmark made by screen re-photography, with diverse scenes and
  multilingual text; it ships no text annotations (none is mentioned, and the official scripts read
  images only). It is scored here like the other paired sets: OCR of the HR image is the reference
  of the OCR metrics, as for RealSR.
* The official inference takes ``-i <folder>`` and reads every file directly in it (not
  recursively) whose suffix, lower-cased, is .png .jpg .jpeg .bmp .tif .tiff or .webp, in sorted
  name order; each SR output is written under the LR input's own file name. SR, LR and HR are
  therefore matched by file name, which is what this loader does (by stem, so ``0001.png`` pairs
  ``0001.jpg``).
* The README runs ScreenSR with ``-u 4`` (``--cfg_scale 0.5`` for the multi-step models).

Not verified (neither hosting page is reachable from here and no copy of the dataset card was
found): the names of the HR and LR folders inside the download, the file names and format, the
image count, and whether every pair is ×4 — the README speaks of "broader variation in scenes and
scales". So:

* ``hr_dir`` / ``lr_dir`` (extras, relative to the root) name the folders when you know them.
  Without them the loader looks, at the root and then inside a single sub-folder (an archive that
  unpacks into ``ScreenSR/``), for exactly one HR-like folder (``HR``, ``GT``, ``HQ``,
  ``test_HR``, ``target``) and one LR-like folder (``LR``, ``LQ``, ``test_LR``, ``input``),
  case-insensitive; none or several is an ``AnnotationError`` that lists the folders found and
  says which extras to set.
* ``scale`` (default 4) is checked on every pair: LR × scale must equal HR, or the item is an
  ``AnnotationError`` naming the LR file and both sizes (skipped and counted with ``skip_bad``).
* ``hr_suffix`` / ``lr_suffix`` strip a name suffix before pairing (``0001_HR.png`` /
  ``0001_LR.png``), as in ``SRPairs``.
"""
from __future__ import annotations

from pathlib import Path

from evalkit.loaders.base import AnnotationError
from evalkit.loaders.srpairs import SRPairs

# lower-cased folder names, in the order they are reported
HR_NAMES = ("hr", "gt", "hq", "test_hr", "target")
LR_NAMES = ("lr", "lq", "test_lr", "input")


class ScreenSR(SRPairs):
    """LR/HR pairs matched by file stem; ``BenchItem.lr`` is the real captured LR (uint8 RGB
    h×w×3) and ``hr`` the reference (uint8 RGB (h·scale)×(w·scale)×3)."""

    def __init__(self, entry, **kw):
        super().__init__(entry, **kw)
        x = entry.extra
        self.hr_dir = self.root / x["hr_dir"] if x.get("hr_dir") else None
        self.lr_dir = self.root / x["lr_dir"] if x.get("lr_dir") else None

    def _list(self) -> dict[str, tuple[Path, Path]]:
        if self.hr_dir is None or self.lr_dir is None:
            self.hr_dir, self.lr_dir = self._find_dirs()
        return super()._list()

    def _find_dirs(self) -> tuple[Path, Path]:
        """The HR-like and LR-like folders not given as extras: exactly one of each at the root,
        else inside its single sub-folder."""
        self._need_dir(self.root, "ScreenSR root")
        tried = []
        for base in self._bases():
            subs = sorted(p for p in base.iterdir() if p.is_dir())
            tried.append(f"{base}: [{', '.join(p.name for p in subs) or 'no folders'}]")
            hr = [self.hr_dir] if self.hr_dir else [p for p in subs if p.name.lower() in HR_NAMES]
            lr = [self.lr_dir] if self.lr_dir else [p for p in subs if p.name.lower() in LR_NAMES]
            if len(hr) > 1 or len(lr) > 1:
                raise AnnotationError(base, None, f"ScreenSR: several HR/LR folder candidates "
                                      f"({', '.join(p.name for p in hr + lr)}); set hr_dir and lr_dir in the "
                                      f"dataset entry {self.entry.name!r}")
            if hr and lr:
                return hr[0], lr[0]
        raise AnnotationError(self.root, None, "ScreenSR: no HR and LR folder pair found (looked for HR folders "
                              f"named {'/'.join(HR_NAMES)} and LR folders named {'/'.join(LR_NAMES)}, any case; "
                              f"found {'; '.join(tried)}); set hr_dir and lr_dir (relative to the root) in the "
                              f"dataset entry {self.entry.name!r}")

    def _bases(self) -> list[Path]:
        subs = [p for p in self.root.iterdir() if p.is_dir()]
        return [self.root, subs[0]] if len(subs) == 1 else [self.root]
