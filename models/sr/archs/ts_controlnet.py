"""GLYPH-SR's TS-ControlNet: a frozen SR-ControlNet and a trainable Text-ControlNet on one SDXL UNet.

Both branches are diffusers ``ControlNetModel``s of the SDXL UNet's shape, fed the same control
image (the bicubic-upsampled LR, N×3×H×W in [0, 1]). The SR branch reads the embedding the
backbone reads; the text branch reads the text-centric embedding (the scene caption plus the
verbalised OCR strings). Their residuals are mixed by the ping-pong weight λ ∈ [0, 1]:

    c(λ) = s_ctrl · [(1 − λ/2) · C_SR + (λ/2) · C_TXT]

so λ = 1 is the paper's c = s_ctrl/2 · (C_SR + C_TXT) and λ = 0 is the SR branch alone at full
strength (a scene-centric step, where the text branch is not run at all). The λ = 0 form is our
choice: the paper gives only the λ = 1 sum (see ``models.sr.glyphsr``).
"""
from __future__ import annotations

from torch import nn


def residual_weights(lam: float, s_ctrl: float) -> tuple[float, float]:
    """(w_SR, w_TXT) of the residual mix at ping-pong weight ``lam`` (see the module docstring)."""
    lam = float(lam)
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"ping-pong weight must be in [0, 1], got {lam}")
    return s_ctrl * (1 - lam / 2), s_ctrl * lam / 2


class TSControlNet(nn.Module):
    """``forward(z, t, cond, emb, pooled, text_emb, text_pooled, time_ids, lam, s_ctrl)`` ->
    (down residuals, mid residual) for the SDXL UNet.

    z: N×4×h×w latent (model input, already scaled), t: timestep(s), cond: N×3×8h×8w in [0, 1];
    emb/pooled: the SR branch's (= the backbone's) N×77×D prompt embedding and N×P pooled one;
    text_emb/text_pooled: the text branch's; time_ids: N×6. ``text`` may be swapped for a
    wrapper of the same module (a DDP replica while training) through ``text_net``.
    """

    def __init__(self, sr, text):
        super().__init__()
        self.sr, self.text = sr, text

    def forward(self, z, t, cond, emb, pooled, text_emb, text_pooled, time_ids, lam: float, s_ctrl: float,
                text_net=None):
        w_sr, w_txt = residual_weights(lam, s_ctrl)
        down, mid = self.sr(z, t, encoder_hidden_states=emb, controlnet_cond=cond, conditioning_scale=w_sr,
                            added_cond_kwargs={"text_embeds": pooled, "time_ids": time_ids}, return_dict=False)
        if w_txt == 0:
            return list(down), mid
        net = text_net if text_net is not None else self.text
        down_t, mid_t = net(z, t, encoder_hidden_states=text_emb, controlnet_cond=cond, conditioning_scale=w_txt,
                            added_cond_kwargs={"text_embeds": text_pooled, "time_ids": time_ids}, return_dict=False)
        return [a + b for a, b in zip(down, down_t)], mid + mid_t
