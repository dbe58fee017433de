"""Named degradation settings used by published SR methods, and ``get_preset``.

Each preset records where its numbers come from. Sources were read in the methods' own
repositories; anything that could not be confirmed is marked (unverified).
"""
from __future__ import annotations

import dataclasses
import difflib

from models.errors import TextsrError
from synth.degrade.pipeline import DegradeConfig

# Real-ESRGAN x4plus training (xinntao/Real-ESRGAN options/train_realesrgan_x4plus.yml and
# RealESRGANDataset; identical for RealESRNet): the DegradeConfig defaults, with USM of the HR
# ("gt_usm") as in RealESRGANModel.feed_data. Kernel sizes 7..21 for all three kernels are
# hard-coded in the dataset (``kernel_range``), whatever ``blur_kernel_size`` says.
REALESRGAN = DegradeConfig(name="realesrgan", usm_sharpen=True)

# OSEDiff (cswry/OSEDiff dataloaders/params_realesrgan.yml + dataloaders/realesrgan.py): the same
# numbers as Real-ESRGAN, run per sample on CPU, with the USM line commented out. OSEDiff then
# resizes the LR back to the HR size (random mode, ``resize_bak=True``): that is model input
# preparation, not part of the degradation, and is left to the caller.
OSEDIFF = DegradeConfig(name="osediff", usm_sharpen=False)

# SeeSR (cswry/SeeSR utils_data/make_paired_data.py, the script its README uses to build the
# training pairs): Real-ESRGAN's numbers with USM on (``use_usm=True``). It sets
# ``blur_kernel_size2 = 11``, but SeeSR's basicsr/data/realesrgan_dataset.py never reads that
# option: like Real-ESRGAN it draws every kernel size from a hard-coded 7..21, so the stage-2
# kernels SeeSR actually trained on are 7..21 (checked at commit 8edecc7). We reproduce what ran;
# for the configured intent use ``get_preset("seesr", kernel_range2=(7, 9, 11))``. (Its other file,
# dataloaders/params_realesrgan.yml, with milder noise and JPEG, feeds the DAPE tagger's training,
# not the SR model's.) SeeSR skips the final 8-bit rounding before saving floats to PNG; our
# output is uint8 either way.
SEESR = DegradeConfig(name="seesr", usm_sharpen=True)

# TADiSR (mingcv/TADiSR tadisr/training/datasets.py, RealESRGANDataset): Real-ESRGAN's numbers with
# the second stage widened to the first stage's resize and noise ranges: resize probs
# [0.2, 0.7, 0.1], range [0.15, 1.5], Gaussian sigma [1, 30], Poisson scale [0.05, 3]. The code
# that applies these (the feed_data equivalent) is not in that repository, so whether TADiSR
# sharpens the HR first is (unverified); we keep Real-ESRGAN's USM. (Its ftsr_dataset_syn.py, which
# built the FTSR test set, uses a different chain — resize first, blur and noise in random order,
# no stage-1 JPEG — that this second-order structure does not express.)
TADISR = DegradeConfig(
    name="tadisr", usm_sharpen=True,
    resize_prob2=(0.2, 0.7, 0.1), resize_range2=(0.15, 1.5),
    noise_range2=(1.0, 30.0), poisson_scale_range2=(0.05, 3.0),
)

# MATLAB ``imresize(hr, 1/scale, 'bicubic')``: Keys cubic a = -0.5, antialiased (kernel widened by
# the scale), symmetric padding — the LR of DIV2K's "bicubic" track and of the HR-only text
# benchmarks in GLYPH-SR and most SR papers (they call basicsr's ``matlab_functions.imresize`` or
# MATLAB itself). Equal to basicsr's to 1/255 (tests/test_matlab_resize.py). Deterministic.
MATLAB_BICUBIC = DegradeConfig(name="matlab-bicubic", kind="matlab-bicubic", usm_sharpen=False)

# OpenCV ``cv2.resize(INTER_CUBIC)``: a = -0.75 and no antialiasing, so a x4 downscale aliases;
# ~0.5 dB below MATLAB's LR on a x4 text image once both are upsampled back. Called "bicubic"
# here until the MATLAB preset existed; kept for reproducing runs made with it.
CV2_BICUBIC = DegradeConfig(name="cv2-bicubic", kind="cv2-bicubic", usm_sharpen=False)

PRESETS: dict[str, DegradeConfig] = {
    c.name: c for c in (REALESRGAN, OSEDIFF, SEESR, TADISR, MATLAB_BICUBIC, CV2_BICUBIC)}

# Names that meant something once and are ambiguous now: the error says what to use instead.
RETIRED = {
    "bicubic": "'bicubic' is ambiguous and no longer a preset: use 'matlab-bicubic' (MATLAB imresize, "
               "antialiased: what SR papers use, the default for HR-only benchmarks) or 'cv2-bicubic' "
               "(OpenCV INTER_CUBIC, not antialiased: what 'bicubic' meant here before)",
}


class UnknownPresetError(TextsrError, KeyError):
    """An unknown preset name; the message lists close names and all names."""

    def __str__(self) -> str:  # KeyError would repr() the message, quotes and all
        return str(self.args[0])


def get_preset(name: str, **overrides) -> DegradeConfig:
    """The preset ``name`` with fields replaced by ``overrides`` (validated like the preset).

    Raises ``UnknownPresetError`` (a ``KeyError``) for an unknown name and ``ValueError`` for an
    unknown field or an invalid value.
    """
    if name not in PRESETS and name in RETIRED:
        raise UnknownPresetError(f"unknown degradation preset {name!r}: {RETIRED[name]}; "
                                 f"known presets: {sorted(PRESETS)}")
    if name not in PRESETS:
        close = difflib.get_close_matches(name, list(PRESETS), n=3, cutoff=0.5)
        hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
        raise UnknownPresetError(f"unknown degradation preset {name!r}; {hint}known presets: {sorted(PRESETS)}")
    fields = {f.name for f in dataclasses.fields(DegradeConfig)}
    bad = sorted(set(overrides) - fields)
    if bad:
        hints = []
        for b in bad:
            close = difflib.get_close_matches(b, sorted(fields), n=1)
            hints.append(f"{b!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ValueError(f"unknown DegradeConfig field(s) {', '.join(hints)} in overrides for preset {name!r}; "
                         f"valid fields: {sorted(fields)}")
    return dataclasses.replace(PRESETS[name], **overrides)
