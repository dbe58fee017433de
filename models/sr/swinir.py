"""SwinIR, real-world ×4 GAN model (Liang et al., "SwinIR: Image Restoration Using Swin
Transformer", ICCVW 2021; github.com/JingyunLiang/SwinIR, Apache-2.0), on basicsr's SwinIR
architecture, whose state-dict keys equal the official ``network_swinir.py`` (see
``models.sr.archs.swinir_compat``). Inputs are reflect-padded to a multiple of the window size
and the output cropped, as the official forward does.
"""
from __future__ import annotations

from models.sr.spec import SRSpec, build_torch_sr
from models.weights import WeightsFile


def _swinir(**kw):
    from models.compat import import_basicsr

    import_basicsr()
    from basicsr.archs.swinir_arch import SwinIR

    return SwinIR(**kw)


def _adapt(sd, net):
    from models.sr.archs.swinir_compat import adapt_official_swinir_state_dict

    return adapt_official_swinir_state_dict(sd, net)


_REAL_X4 = dict(upscale=4, in_chans=3, img_size=64, window_size=8, img_range=1.0, depths=(6,) * 6,
                embed_dim=180, num_heads=(6,) * 6, mlp_ratio=2.0, upsampler="nearest+conv",
                resi_connection="1conv")
_FILE = "003_realSR_BSRGAN_DFO_s64w8_SwinIR-M_x4_GAN.pth"

SPECS = {
    "swinir-real-x4": SRSpec(
        "swinir-real-x4", _swinir, _REAL_X4, 4,
        WeightsFile(_FILE, url=f"https://github.com/JingyunLiang/SwinIR/releases/download/v0.0/{_FILE}"),
        keys=("params_ema", "params"), adapt=_adapt, pad_multiple=8,
        tiny=dict(img_size=16, window_size=4, depths=(2,), embed_dim=12, num_heads=(2,)),
        about="SwinIR-M real-world x4 (BSRGAN degradations, GAN), Apache-2.0"),
}


def build(name: str, *, tiny: bool = False, scale: int | None = None, **options):
    spec = SPECS[name]
    if scale not in (None, spec.scale):
        raise ValueError(f"{name} is a ×{spec.scale} model; scale={scale} is not available")
    if tiny:
        spec = SRSpec(**{**spec.__dict__, "pad_multiple": spec.tiny["window_size"]})
    return build_torch_sr(spec, tiny=tiny, **options)
