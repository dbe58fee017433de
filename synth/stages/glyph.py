"""Stage: the GLYPH-SR corpus additions to one FTSR-style sample.

Given the clean scene (background + placed text patches, its HR image, ×4 LR and the degradation
generator's state before that LR was made), this adds:

- the text-distorted scene (``hr_tdist.png``) and its LR made with the *same* degradation draw
  (``lr_tdist.png``: identical kernels, resizes, noise fields and JPEG qualities), so the four
  subsets differ only where they should — text quality only inside the text's reach, image quality
  only between HR and LR;
- LR images at the extra scales (``lr_x8.png``);
- text guidance: the true strings and the strings OCR reads in each LR, in reading order with
  3×3-grid positions and verbalised prompts, plus a scene caption (a captioning model when its
  weights are present, else the background source's metadata, marked as such).

Subsets (text quality × image quality) and the members that hold them:
``text_clean/image_clean`` = hr.png (P⁺ᴴ), ``text_clean/image_degraded`` = lr.png,
``text_distorted/image_clean`` = hr_tdist.png, ``text_distorted/image_degraded`` = lr_tdist.png (P⁻ᴸ).
"""
from __future__ import annotations

import numpy as np

from synth.degrade import degrade
from synth.imageio import encode_png
from synth.stages.distort import DistortStage
from synth.stages.guidance import describe, metadata_caption, read_lr
from synth.stages.paste import composite

SUBSETS = {"text_clean/image_clean": "hr.png", "text_clean/image_degraded": "lr.png",
           "text_distorted/image_clean": "hr_tdist.png", "text_distorted/image_degraded": "lr_tdist.png"}


class GlyphStage:
    def __init__(self, cfg, degrade_stage, renderer, ocr, bg_sources, captioner=None, caption_note: str = ""):
        self.cfg = cfg
        self.degrade = degrade_stage           # synth.stages.degrade.DegradeStage (preset + scale)
        self.distort = DistortStage(cfg.distort, renderer)
        self.ocr = ocr
        self.bg_sources = bg_sources
        self.captioner = captioner             # models.caption captioner, or None (metadata fallback)
        self.caption_note = caption_note       # why there is no captioner, recorded per sample

    def _caption(self, bg: np.ndarray, bg_info: dict) -> dict:
        if self.captioner is not None:
            # caption the text-free background: the scene, not our pasted words
            return {"caption": self.captioner.caption(bg), "caption_source": self.captioner.name}
        text, how = metadata_caption(bg_info, self.bg_sources)
        out = {"caption": text, "caption_source": how}
        if self.caption_note:
            out["caption_note"] = self.caption_note
        return out

    def process(self, *, bg, hr, lr, placed, instances, bg_info, rng, deg_rng) -> tuple[dict, dict]:
        """-> (extra members, the sample JSON's "glyph" entry); ``instances`` gain their distorted
        string and the operations applied. ``deg_rng``: a copy of the generator as it was just
        before ``lr`` was made from ``hr``."""
        spec = self.degrade.spec
        dist_placed, records = self.distort.process(placed, rng)
        hr_td, _ = composite(bg, dist_placed)
        lr_td, _ = degrade(hr_td, spec.scale, self.degrade.cfg, deg_rng)
        for inst, rec in zip(instances, records):
            inst["text_distorted"] = rec["text_distorted"]
            inst["distortion"] = rec["ops"]
        members = {"hr_tdist.png": encode_png(hr_td), "lr_tdist.png": encode_png(lr_td)}
        h, w = hr.shape[:2]
        lrs = {spec.scale: lr}
        extra_deg = {}
        for s in self.cfg.extra_scales:
            lrs[s], extra_deg[f"x{s}"] = degrade(hr, s, self.degrade.cfg, rng)
            members[f"lr_x{s}.png"] = encode_png(lrs[s])
        truth, prompt_true = describe([{"text": i["text"], "polygon": i["polygon"]} for i in instances], w, h)
        ocr_lr = {f"x{s}": read_lr(self.ocr, im, (h, w), self.cfg.ocr_min_score) for s, im in sorted(lrs.items())}
        cap = self._caption(bg, bg_info)
        guidance = {"true": truth, "prompt_true": prompt_true, "ocr_lr": ocr_lr, **cap,
                    # what a GLYPH-SR model is given at inference: caption + what OCR reads in the LR
                    "prompt": " ".join(t for t in (cap["caption"], ocr_lr[f"x{spec.scale}"]["prompt"]) if t)}
        meta = {"subsets": dict(SUBSETS), "guidance": guidance, "extra_degradations": extra_deg,
                "lr_tdist_degradation": "the same draw as lr.png (see degradation)"}
        return members, meta
