"""HAT, real-world ×4 GAN model (Chen et al., "Activating More Pixels in Image Super-Resolution
Transformer", CVPR 2023; github.com/XPixelGroup/HAT, Apache-2.0), on our own implementation
``models.sr.archs.hat_arch.HAT`` whose state-dict keys equal the official ones. The network
reflect-pads to a multiple of its window size itself. On CUDA it runs in bf16 by default: fp16
is reported to overflow to NaN in HAT's attention.
"""
from __future__ import annotations

from models.sr.spec import SRSpec, build_torch_sr
from models.weights import WeightsFile


def _hat(**kw):
    from models.sr.archs.hat_arch import HAT

    return HAT(**kw)


def _real_x4() -> dict:
    from models.sr.archs.hat_arch import HAT_REAL_X4_KWARGS

    return dict(HAT_REAL_X4_KWARGS)


def _tiny() -> dict:
    from models.sr.archs.hat_arch import hat_tiny_kwargs

    return hat_tiny_kwargs(4)


# Official downloads are Google Drive / Baidu folders (README of XPixelGroup/HAT), which cannot be
# fetched by a script; two independent third-party Hugging Face uploads of the file agree on this
# sha256, so we fetch from one of them and verify the digest.
_FILE = "Real_HAT_GAN_SRx4.pth"
_SHA256 = "f5b1e3bbbb05147ca2beefcc715279cb647d7976cbda67d62ea7e6e20d5ffcc7"
SPECS = {
    "hat-real-x4": SRSpec(
        "hat-real-x4", _hat, _real_x4(), 4,
        WeightsFile(_FILE, hf_repo="ad-astra-video/upscalers", sha256=_SHA256),
        keys=("params_ema", "params"), tiny=_tiny(), cuda_dtype="bf16",
        about="HAT real-world x4 GAN (Real_HAT_GAN_SRx4.pth), Apache-2.0"),
}


def build(name: str, *, tiny: bool = False, scale: int | None = None, **options):
    spec = SPECS[name]
    if scale not in (None, spec.scale):
        raise ValueError(f"{name} is a ×{spec.scale} model; scale={scale} is not available")
    return build_torch_sr(spec, tiny=tiny, **options)
