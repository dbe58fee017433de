"""UZ-ST (UltraZoom-Scene Text), the real paired Chinese scene-text SR set TiGeSR introduced.

Luo et al., "Restore Text First, Enhance Image Later: Two-Stage Scene Text Image Super-Resolution
with Glyph Structure Guidance" (TIGER / TiGeSR), CVPR 2026, arXiv 2510.21590; code
https://github.com/OpenVeraTeam/TiGeSR (Apache-2.0, per its Hugging Face model card
``mxluocv/TiGeSR``); data: Hugging Face dataset ``mxluocv/UZ-ST``.

Verified (from the stored dataset card, model card and the paper's abstract pages):

* the dataset card of ``mxluocv/UZ-ST`` declares ``license: apache-2.0`` and says only that it is
  "the official dataset repo for UZ-ST" of the paper;
* UZ-ST is real LR/HR pairs of Chinese scene text captured with extreme zoom (the arXiv v1 abstract
  says ×14.29), and the TiGeSR README lists "UZ-ST alignment utilities" (the pairs are aligned);
* TiGeSR ships separate ``uzst/`` and ``realce/`` checkpoints (stage1 glyph model + encoder,
  stage2 ControlNet).

NOT verified (the GitHub repository cannot be fetched here and no file listing of the dataset was
found): the folder and file names of the download, the split names, the image count, the stored
sizes (whether LR is stored at its native size or resized to the HR size, and at what scale the
test pairs are evaluated: ×14.29 is not an integer), and whether text annotations are included.
So this loader reads the common paired layout and says what it found when it does not fit:

* the pairs live under ``<root>/<split>/`` (``split`` extra, default ``test``) when that folder
  exists, else under the root, else under the root's single sub-folder (an archive that unpacks
  into ``UZ-ST/``);
* there, one HR-like folder (``HR``, ``GT``, ``HQ``, ``test_HR``, ``target``) and one LR-like
  folder (``LR``, ``LQ``, ``test_LR``, ``input``), case-insensitive, or ``hr_dir`` / ``lr_dir``
  extras (relative to the root); none or several is an ``AnnotationError`` that lists the folders
  found and names the extras to set;
* images pair by file stem (``hr_suffix`` / ``lr_suffix`` strip a name suffix, as ``SRPairs``);
* ``scale`` (default 4) is checked per pair: LR × scale == HR, or LR of exactly the HR size (LR
  resized to the HR grid, as a diffusion-SR release often stores it), which is given as stored with
  ``meta["lr_is_hr_size"] = True`` (the RealSR V3 convention). Any other size is an
  ``AnnotationError`` naming the file and both sizes.

No text annotations are read (none verified): the OCR metrics use OCR of HR as their reference,
as for RealSR and ScreenSR.
"""
from __future__ import annotations

from pathlib import Path

from evalkit.loaders.screensr import ScreenSR


class UZST(ScreenSR):
    """UZ-ST LR/HR pairs by file stem: ``BenchItem.lr`` uint8 RGB h×w×3 (or HR-sized, flagged),
    ``hr`` uint8 RGB (h·scale)×(w·scale)×3."""

    allow_same_size = True

    def __init__(self, entry, **kw):
        super().__init__(entry, **kw)
        self.split = str(self.split or "test")

    def _bases(self) -> list[Path]:
        split = self.root / self.split
        if split.is_dir():
            return [split]
        return super()._bases()
