"""Evaluation protocols: named, versioned bundles of metric settings that reproduce one paper's script.

A protocol says which metrics a paper reports and how each is computed (the keyword arguments of
:func:`evalkit.metrics.registry.create_metric`), plus the crop, the LR preset of HR-only benchmarks
and the scales it reports. ``evalkit score --protocol NAME`` builds every metric as::

    create_metric(name, ocr=engine, device=..., allow_download=...,
                  crop_border=protocol.crop_border, **protocol.metrics[name])

(the protocol's kwargs win) and writes ``protocol.to_dict()`` into summary.json beside each metric's
``settings()``. Metric *names* stay the plain ones (``psnr``, ``ssim`` …): a protocol changes how they
are computed, and ``settings()`` says how. Bump ``version`` whenever a setting changes, so two
summaries with the same name and version were computed alike.

Protocols (``list_protocols()``):

* ``basicsr`` — today's defaults (:data:`~evalkit.metrics.registry.DEFAULT_METRICS`, basicsr-convention
  PSNR/SSIM on Y, no crop). The protocol of every run without ``--protocol``.
* ``osediff`` — OSEDiff's ``test_metrics.py`` (also used by CODSR and PiSA-SR): pyiqa-convention
  PSNR/SSIM, LPIPS, DISTS, CLIP-IQA, NIQE, MUSIQ, MANIQA-PIPAL, clean FID; no crop.
  ``tests/test_protocols.py`` reproduces its logged PSNR/SSIM/NIQE on ``shared/paper/osediff``.
* ``tadisr`` — TADiSR's table (PSNR, SSIM, LPIPS, FID, OCR-A). Its repository has no evaluation
  script; PSNR/SSIM follow its own code (RGB), the rest the field's usual choices (see ``notes``).
* ``glyphsr`` — GLYPH-SR's table (OCR-F1 at ×4/×8 on HR-only sets, MANIQA, CLIP-IQA, MUSIQ) with
  the LR made by MATLAB-style antialiased bicubic. Its OCR-F1 matching rule is unpublished. OCR by
  OpenOCR (``openocr-mobile``, the paper's engine) when its files resolve, else PP-OCRv4
  (:func:`choose_ocr_engine`; the choice and why go into summary.json).
* ``tair`` — TAIR's benchmarks (Real-Text, SA-Text-test): text-spotting detection F1 and end-to-end F1
  (``spot_det_f1`` / ``spot_e2e_f1``, IoU 0.5, no lexicon) with the run's OCR engine as the spotter
  (TAIR uses TESTR; its evaluation script is unreleased), plus the restoration metrics (see ``notes``).
"""
from __future__ import annotations

import copy
import difflib
import sys
from dataclasses import dataclass, field
from typing import Any

from models.registry import UnknownNameError

DEFAULT_PROTOCOL = "basicsr"


@dataclass(frozen=True)
class Protocol:
    """One paper's evaluation settings.

    name:        registry name (``"osediff"``).
    version:     bumped whenever a setting changes.
    description: one line: whose script, which paper.
    source:      where the settings come from (repository, path, commit when known).
    metrics:     metric registry name -> keyword arguments for ``create_metric`` (may be empty).
    crop_border: passed to every metric; a metric's own kwargs override it.
    lr_preset:   the fixed LR preset for HR-only benchmarks (None: the benchmark's own LR).
    scales:      the scales the paper reports (informational).
    notes:       what the paper leaves open and the choices made here.
    ocr_engines: OCR engines in order of preference (the paper's first, then the fallback): a run
                 without ``--ocr`` uses the first whose weights resolve (:func:`choose_ocr_engine`);
                 empty: :data:`models.ocr.DEFAULT_OCR`.
    """

    name: str
    version: str
    description: str
    source: str
    metrics: dict[str, dict] = field(default_factory=dict)
    crop_border: int = 0
    lr_preset: str | None = None
    scales: tuple[int, ...] = ()
    notes: tuple[str, ...] = ()
    ocr_engines: tuple[str, ...] = ()

    def metric_kwargs(self, metric: str) -> dict[str, Any]:
        """The keyword arguments the protocol gives ``metric``: ``crop_border`` then its own (which win).
        A metric the protocol does not list gets only ``crop_border``."""
        return {"crop_border": self.crop_border, **copy.deepcopy(self.metrics.get(metric, {}))}

    def to_dict(self) -> dict[str, Any]:
        """Every setting as plain JSON types (for summary.json)."""
        return {"name": self.name, "version": self.version, "description": self.description,
                "source": self.source, "metrics": copy.deepcopy(self.metrics),
                "crop_border": self.crop_border, "lr_preset": self.lr_preset,
                "scales": list(self.scales), "notes": list(self.notes), "ocr_engines": list(self.ocr_engines)}


def _basicsr() -> Protocol:
    from evalkit.metrics.registry import DEFAULT_METRICS

    return Protocol(
        name="basicsr", version="1",
        description="textsr-kit defaults: basicsr-convention PSNR/SSIM on Y (most SR papers), LPIPS, NIQE, "
                    "OCR metrics",
        source="basicsr 1.4.2 basicsr/metrics/psnr_ssim.py (calculate_psnr/calculate_ssim, test_y_channel=True); "
               "evalkit.metrics.registry.DEFAULT_METRICS",
        metrics={name: {} for name in DEFAULT_METRICS},
        notes=("PSNR/SSIM: Y = BT.601 limited range, unrounded, float64; SSIM valid region, no clipping",
               "crop_border 0 (basicsr's habit is crop_border = scale: pass --crop-border to change it)"))


OSEDIFF_COMMIT = "fcc4f09c7ed66a9bc0ba9433940d76b343142426"
TADISR_COMMIT = "6f591a6b9a0e665982e853f22c9d145c97da2ae0"

_OSEDIFF = Protocol(
    name="osediff", version="1",
    description="OSEDiff's test_metrics.py (Wu et al., NeurIPS 2024); also the CODSR and PiSA-SR tables",
    source=f"github.com/cswry/OSEDiff test_metrics.py @ {OSEDIFF_COMMIT} (pyiqa==0.1.10 pinned in its "
           "requirements.txt; the PSNR/SSIM/NIQE maths is unchanged in pyiqa 0.1.16)",
    metrics={
        # pyiqa.create_metric('psnr'|'ssim', test_y_channel=True, color_space='ycbcr')
        "psnr": {"convention": "pyiqa"},
        "ssim": {"convention": "pyiqa"},
        "lpips": {"net": "alex"},             # pyiqa 'lpips' (v0.1, AlexNet)
        "dists": {},
        "clipiqa": {},                        # pyiqa 'clipiqa' defaults (RN50)
        "niqe": {"color_space": "yiq"},       # pyiqa 'niqe' defaults (Y of YIQ)
        "musiq": {},                          # pyiqa 'musiq' (KonIQ)
        "maniqa": {"variant": "pipal"},       # pyiqa 'maniqa-pipal'
        "fid": {},                            # pyiqa 'fid' folder to folder, mode 'clean'
    },
    crop_border=0,
    scales=(4,),
    notes=(
        "images read with cv2, BGR->RGB, uint8/255 in float32; no crop, no resize; SR and HR at the same size",
        "test_metrics.py pairs SR and GT files by sorted position; evalkit pairs them by name",
        "no-reference metrics (CLIP-IQA, NIQE, MUSIQ, MANIQA) on SR alone; FID between the SR and GT folders",
        "the published tables are means over images rounded to 4 decimals",
        ("NIQE parameters: pyiqa's niqe_modelparameters.mat, written here from basicsr's niqe_pris_params.npz; "
        "single images may move ~0.02 (float32 luma rounding ties), the mean ~1e-3"),
    ))

_TADISR = Protocol(
    name="tadisr", version="1",
    description="TADiSR (text-aware diffusion SR): PSNR, SSIM, LPIPS, FID, OCR-A on FTSR-TE and Real-CE-val",
    source=f"github.com/mingcv/TADiSR @ {TADISR_COMMIT}: tadisr/training/metrics.py (PSNR, SSIM); "
           "README (table, OCR-A = OCR recognition accuracy on corresponding text regions)",
    metrics={
        "psnr": {"convention": "tadisr"},
        "ssim": {"convention": "tadisr"},
        "lpips": {"net": "alex"},
        "fid": {},
        "ocr_a": {"distance": "indel"},
    },
    crop_border=0,
    scales=(4,),
    notes=(
        ("the repository has no script for the paper's tables; PSNR/SSIM follow its own validation code "
        "(tadisr/training/metrics.py: RGB in [0, 1], PSNR 20*log10(1/RMSE), pytorch-ssim-style SSIM with a "
        "zero-padded 11x11 Gaussian window, no crop) - an assumption that the tables used it"),
        ("LPIPS: the network is unpublished; AlexNet (pyiqa 'lpips', the field's usual) chosen here. Its code "
        "trains with lpips VGG: --metric-opt lpips.net=vgg for that"),
        "FID: implementation unpublished; pyiqa clean-fid, SR folder vs HR folder (the field's usual)",
        ("OCR-A: PP-OCR detection+recognition on HR, the same boxes recognised on SR, python-Levenshtein "
        "ratio (indel distance); per-box vs per-image averaging unpublished (ocr_a is per box, "
        "ocr_a_image_mean per image)"),
    ))

_GLYPHSR = Protocol(
    name="glyphsr", version="2",
    description="GLYPH-SR: OCR-F1 at x4/x8 on HR-only scene-text sets (SVT, SCUT-CTW1500, CUTE80) plus "
                "MANIQA, CLIP-IQA, MUSIQ",
    source="GLYPH-SR paper (no public code or evaluation script); LR as in most SR papers: MATLAB-style "
           "antialiased bicubic (basicsr utils/matlab_functions.imresize)",
    metrics={
        "ocr_f1": {"iou_threshold": 0.5},
        "maniqa": {"variant": "pipal"},
        "clipiqa": {},
        "musiq": {},
    },
    crop_border=0,
    lr_preset="matlab-bicubic",
    scales=(4, 8),
    notes=(
        ("OCR-F1 matching rule unpublished: the usual end-to-end rule is used (IoU >= 0.5 with an unmatched GT "
        "box and equal transcription, case-insensitive, punctuation stripped; '###' don't-care)"),
        ("MANIQA variant unpublished: PIPAL (pyiqa 'maniqa-pipal', the diffusion-SR habit) chosen; "
        "--metric-opt maniqa.variant=koniq for pyiqa's plain 'maniqa'"),
        "HR-only benchmarks get their LR from the 'matlab-bicubic' preset at each reported scale",
        ("OCR: the paper measures with OpenOCR (openocr-mobile); PP-OCRv4 (rapidocr-ppocrv4) when OpenOCR's "
         "files are not found - summary.json's ocr_engine / ocr_engine_choice say which ran and why"),
    ),
    ocr_engines=("openocr-mobile", "rapidocr-ppocrv4"))

TAIR_COMMIT = "5f0365f4bf37d7ea1bad2544e988b28f838b0c08"

_TAIR = Protocol(
    name="tair", version="1",
    description="TAIR (Min et al., ICLR 2026) on Real-Text / SA-Text-test: text-spotting detection F1 and "
                "end-to-end F1 (IoU 0.5, no lexicon) plus the restoration metrics",
    source=f"github.com/cvlab-kaist/TAIR @ {TAIR_COMMIT}: README (benchmarks, TESTR spotter), "
           "testr/adet/evaluation/text_eval_script.py (TESTR's ICDAR-lineage evaluation, vendored); "
           "arXiv 2506.09993. The script behind the paper's tables is not released",
    metrics={
        "spot_det_f1": {"iou_threshold": 0.5},
        "spot_e2e_f1": {"iou_threshold": 0.5},
        "psnr": {"convention": "pyiqa"},
        "ssim": {"convention": "pyiqa"},
        "lpips": {"net": "alex"},
        "dists": {},
        "fid": {},
        "niqe": {"color_space": "yiq"},
        "musiq": {},
        "maniqa": {"variant": "pipal"},
        "clipiqa": {},
    },
    crop_border=0,
    scales=(4,),
    notes=(
        ("spotter: TAIR scores restored images with TESTR (Total-Text R-50 polygon checkpoint); here the run's "
         "OCR engine (summary.json ocr_engine, default PP-OCRv4 lines) spots instead. Absolute spot_* numbers are "
         "therefore not comparable with the paper's; compare methods under the same engine, and an HR/GT row "
         "as the ceiling"),
        ("matching: evalkit.metrics.ocr_match.match_end_to_end (the ocr_f1 rule): IoU >= 0.5 (TESTR: > 0.5), "
         "greedy by IoU; e2e text equal after NFKC, case folding, punctuation/whitespace removal (TESTR: "
         "upper()-cased exact); no lexicon; '###' don't-care with the 0.5 area rule as in TESTR's script"),
        ("granularity: SA-Text/Real-Text instances are words or short phrases; the spotter's lines are split "
         "into words (OCREngine.readwords: PP-OCRv4's decoded character positions; other engines cut the line "
         "quad in proportion to character counts) - units=lines (--metric-opt spot_e2e_f1.units=lines) "
         "scores whole lines instead"),
        ("restoration metrics: the paper's table lists fidelity and no-reference IQA metrics (PSNR, SSIM, LPIPS, "
         "DISTS, FID, NIQE, MUSIQ, MANIQA, CLIP-IQA - unverified from the paper's text here); conventions "
         "unpublished: the diffusion-SR habit (OSEDiff's pyiqa settings) is used"),
        ("benchmarks: realtext-test (real x4 pairs); satext-test is level 1, satext-test-lv2 / -lv3 the other "
         "degradation levels (datasets.yaml 'level')"),
    ))

_BUILT = {"osediff": _OSEDIFF, "tadisr": _TADISR, "glyphsr": _GLYPHSR, "tair": _TAIR}
_NAMES = ("basicsr", "glyphsr", "osediff", "tadisr", "tair")


class UnknownProtocolError(UnknownNameError):
    """``--protocol`` names no protocol; the message lists close matches."""


def list_protocols() -> list[str]:
    return list(_NAMES)


def get_protocol(name: str) -> Protocol:
    """The protocol ``name`` (see :func:`list_protocols`). Unknown names raise
    :class:`UnknownProtocolError` with "did you mean …"."""
    if name == "basicsr":
        return _basicsr()  # built on demand: it mirrors DEFAULT_METRICS, which lives in the registry module
    if name in _BUILT:
        return copy.deepcopy(_BUILT[name])  # the caller may edit its copy's dicts; ours stay put
    close = difflib.get_close_matches(str(name), _NAMES, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise UnknownProtocolError(f"unknown protocol {name!r}{hint} (known: {', '.join(_NAMES)})")


def choose_ocr_engine(protocol: Protocol, requested: str | None = None,
                      allow_download: bool | None = False) -> tuple[str, str | None]:
    """The OCR engine a run uses, and why when it is not simply the one asked for: ``(name, note)``.

    ``requested`` (``--ocr``) wins: ``(requested, None)``. Otherwise the first of
    ``protocol.ocr_engines`` whose files resolve (an engine class with a ``check_weights(allow_download)``
    classmethod is asked; one without needs nothing beyond its package), the last one taken without
    asking (the fallback); with no preference :data:`models.ocr.DEFAULT_OCR`. ``note`` names each engine
    passed over and the file it lacked, e.g. ``"openocr-mobile weights not found: openocr_det_model.onnx;
    rapidocr-ppocrv4 used"``, or says the preferred engine was found.
    """
    from models.ocr.base import DEFAULT_OCR, OCR_ENGINES
    from models.weights import WeightsMissingError

    if requested:
        return requested, None
    prefs = protocol.ocr_engines
    if not prefs:
        return DEFAULT_OCR, None
    skipped = []
    for name in prefs[:-1]:
        check = getattr(OCR_ENGINES.get(name), "check_weights", None)
        try:
            if check is not None:
                check(allow_download=allow_download)
        except WeightsMissingError as e:
            where = e.looked[0] if e.looked else e.weights_file.filename  # "<dir>/<file> (TEXTSR_WEIGHTS)"
            skipped.append(f"{name} weights not found: {where}")
            continue
        return name, f"{name}: protocol {protocol.name}'s preferred OCR engine, weights found"
    return prefs[-1], "; ".join(skipped + [f"{prefs[-1]} used"])


_ANNOUNCED: set[str] = set()


def announce_ocr_choice(note: str | None) -> None:
    """Print ``note`` from :func:`choose_ocr_engine` to stderr, once per process."""
    if note and note not in _ANNOUNCED:
        _ANNOUNCED.add(note)
        print(f"evalkit: OCR engine: {note}", file=sys.stderr)
