"""SRSR: spatially re-focused text conditioning, a training-free plug-in for SeeSR.

Paper: C. Chen, M. Abdolshah, V. Shevchenko, H. Li, C. Xu, P. Purkait, "SRSR: Enhancing Semantic
Accuracy in Real-World Image Super-Resolution with Spatially Re-Focused Text-Conditioning",
NeurIPS 2025 (arXiv:2510.22534). No official code was published (none found by repository or
code search, Nov 2026); this file is our implementation of the paper's description.

The method, as the paper describes it:

1. The tagger's (DAPE's) tags are grounded in the LR image (Grounded-SAM: Grounding DINO boxes ->
   SAM masks). Tags that cannot be grounded are dropped from the prompt ("inaccurate guidance is
   more harmful than incomplete guidance"); each kept tag gets a binary mask.
2. SRCA, in the UNet's text cross-attention layers (the 16 of SD-2): ``α'_ij = M_ij·α_ij``
   renormalised over the valid pixel-token pairs, where ``M_ij = 1`` when token j's tag is grounded
   at pixel i. Tokens that belong to no tag (start/end/padding, commas, the added quality prompt)
   stay valid everywhere, so every row keeps a valid token. Renormalising each pixel's row of a
   masked softmax is exactly a softmax over that row's valid tokens, which is how it is computed
   here (``scaled_dot_product_attention`` with a boolean mask). When no pair is masked (no SRCA
   state, or every tag grounded everywhere) the processor is bit-identical to diffusers'
   ``AttnProcessor2_0``.
3. STCFG, in the sampling loop: ``ε̂ = (1−M)[ε_∅ + s(ε_y − ε_∅)] + M·ε_∅`` with ``M = 1`` on
   ungrounded pixels (outside every kept tag's mask). ``ε_∅`` is the CFG branch the pipeline uses as
   unconditional; in SeeSR that is the negative prompt's prediction.

Choices the paper leaves open, made here (the grounding settings go into ``weights_info``):

- Masks reach each attention layer's grid by max-pooling (a latent cell counts as grounded when any
  pixel under it is): a thin text line stays visible at the 1/64-resolution layers.
- SRCA is applied to the UNet only (the paper's count of 16 layers); the ControlNet's text
  cross-attention and SeeSR's image cross-attention are left as they are.
- Grounding thresholds: Grounding DINO box 0.3 / text 0.25 (Grounded-SAM's demo defaults; the
  paper reports robustness for thresholds 0.15-0.55 but its default is not stated in what we read).
- Text tags (``TEXT_TAGS``: "text", "letter", "writing", ... from RAM's tag list) are grounded by
  our own PP-OCR text detector (line polygons), which runs offline; ``grounding="ocr"`` uses only
  that (every other tag is ungrounded, hence dropped), ``"grounded-sam"`` uses only Grounded-SAM,
  the default ``"grounded-sam+ocr"`` both. ``ocr_words=True`` (our extension, off by default) also
  adds each recognised line's text as a tag grounded on its own polygon.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from models.weights import WeightsFolder, resolve_folder

# RAM tags that name written characters themselves (so a text detector's line masks ground them);
# tags of objects that merely carry text ("sign", "poster", "book") are not in the list.
TEXT_TAGS = frozenset({"text", "word", "letter", "lettering", "alphabet", "font", "writing", "handwriting",
                       "calligraphy", "inscription", "number", "quote", "caption", "headline", "title"})
GROUNDINGS = ("grounded-sam+ocr", "grounded-sam", "ocr")

# transformers-format folders (processor files + model.safetensors; the repos' TF/pickle copies are
# not fetched)
GROUNDING_DINO = WeightsFolder("grounding-dino-tiny", hf_repo="IDEA-Research/grounding-dino-tiny",
                               required=("config.json", "model.safetensors"),
                               allow_patterns=("*.json", "*.txt", "model.safetensors"))
SAM = WeightsFolder("sam-vit-huge", hf_repo="facebook/sam-vit-huge", required=("config.json", "model.safetensors"),
                    allow_patterns=("*.json", "model.safetensors"))


# -- grounding -------------------------------------------------------------------------------------
@dataclass
class Grounding:
    """Tags of one image after grounding.

    tags:    the kept (grounded) tags, in prompt order.
    masks:   ``K x h x w`` bool, one mask per kept tag, at the grounded image's size.
    dropped: tags that could not be grounded (left out of the prompt).
    """

    tags: list[str]
    masks: np.ndarray
    dropped: list[str] = field(default_factory=list)

    def ungrounded(self) -> np.ndarray:
        """``h x w`` bool: pixels no kept tag covers (STCFG's M = 1)."""
        return ~self.masks.any(0) if len(self.tags) else np.ones(self.masks.shape[1:], bool)


def _clean_tag(t: str) -> str:
    return re.sub(r"\s+", " ", t.replace(",", " ")).strip()


class OCRGrounder:
    """Grounds text tags on the PP-OCR detector's text lines (filled line polygons).

    engine: an OCR engine name (``models.ocr``) or engine. words: also add every recognised line's
    text as a tag grounded on its own polygon (lines with a recognition score below ``min_score``
    or no text are not added as words, but still ground the text tags).
    """

    def __init__(self, engine="rapidocr-ppocrv4", *, text_tags=TEXT_TAGS, words: bool = False,
                 min_score: float = 0.5):
        from models.ocr import OCREngine, create_ocr

        self.ocr = engine if isinstance(engine, OCREngine) else create_ocr(engine)
        self.text_tags = frozenset(t.lower() for t in text_tags)
        self.words, self.min_score = bool(words), float(min_score)

    def handles(self, tag: str) -> bool:
        return tag.lower() in self.text_tags

    def lines(self, image: np.ndarray):
        return self.ocr.readtext(image)

    def ground(self, image: np.ndarray, tags: list[str], lines=None) -> Grounding:
        import cv2

        h, w = image.shape[:2]
        lines = self.lines(image) if lines is None else lines
        union = np.zeros((h, w), np.uint8)
        word_tags, word_masks = [], []
        for ln in lines:
            poly = np.round(ln.polygon).astype(np.int32)
            cv2.fillPoly(union, [poly], 1)
            text = _clean_tag(ln.text)
            if self.words and text and ln.score >= self.min_score:
                m = np.zeros((h, w), np.uint8)
                cv2.fillPoly(m, [poly], 1)
                word_tags.append(text)
                word_masks.append(m.astype(bool))
        kept, masks, dropped = [], [], []
        for t in tags:
            if self.handles(t) and union.any():
                kept.append(t)
                masks.append(union.astype(bool))
            else:
                dropped.append(t)
        kept += word_tags
        masks += word_masks
        return Grounding(kept, np.stack(masks) if masks else np.zeros((0, h, w), bool), dropped)


class GroundedSAMGrounder:
    """Grounded-SAM (Grounding DINO boxes for the tags -> SAM masks), through transformers.

    Weights: ``IDEA-Research/grounding-dino-tiny`` (the Swin-T OGC model Grounded-SAM's demo uses)
    and ``facebook/sam-vit-huge``, each a folder found by the resolver (explicit path ->
    ``$TEXTSR_WEIGHTS/<name>`` -> HF cache -> download when allowed); absent -> FolderMissingError.
    A tag is kept when at least one query's box score exceeds ``box_threshold`` and its best token
    of that tag exceeds ``text_threshold``; its mask is the union of SAM's masks for those boxes.
    """

    def __init__(self, *, dino=None, sam=None, allow_download=None, device=None, dtype=None,
                 box_threshold: float = 0.3, text_threshold: float = 0.25):
        import torch
        from transformers import (
            AutoProcessor,
            GroundingDinoForObjectDetection,
            SamModel,
            SamProcessor,
        )

        dino_dir = resolve_folder(GROUNDING_DINO, explicit=dino, allow_download=allow_download)
        sam_dir = resolve_folder(SAM, explicit=sam, allow_download=allow_download)
        self.device = torch.device(device or "cpu")
        self.dtype = dtype or torch.float32
        self.dino_proc = AutoProcessor.from_pretrained(dino_dir)
        self.dino = GroundingDinoForObjectDetection.from_pretrained(dino_dir).to(self.device).eval()
        self.sam_proc = SamProcessor.from_pretrained(sam_dir)
        self.sam = SamModel.from_pretrained(sam_dir).to(self.device, self.dtype).eval()
        self.box_threshold, self.text_threshold = float(box_threshold), float(text_threshold)

    def _token_spans(self, caption: str, tags: list[str]) -> list[list[int]]:
        enc = self.dino_proc.tokenizer(caption, return_offsets_mapping=True)
        spans, pos = [], 0
        for t in tags:
            start = caption.index(t.lower(), pos)
            end = start + len(t)
            pos = end
            spans.append([i for i, (a, b) in enumerate(enc["offset_mapping"]) if b > a >= start and b <= end])
        return spans

    def ground(self, image: np.ndarray, tags: list[str]) -> Grounding:
        import torch

        h, w = image.shape[:2]
        tags = [t for t in (_clean_tag(t) for t in tags) if t]
        if not tags:
            return Grounding([], np.zeros((0, h, w), bool), [])
        caption = " . ".join(t.lower() for t in tags) + " ."
        inputs = self.dino_proc(images=image, text=caption, return_tensors="pt").to(self.device)
        with torch.no_grad():
            out = self.dino(**inputs)
        probs = out.logits[0].sigmoid()  # queries x text tokens
        boxes = out.pred_boxes[0]  # cx, cy, w, h relative
        box_score = probs.max(-1).values
        per_tag = []
        for span in self._token_spans(caption, tags):
            tag_score = probs[:, span].max(-1).values if span else torch.zeros_like(box_score)
            per_tag.append(((box_score > self.box_threshold) & (tag_score > self.text_threshold)).nonzero()[:, 0])
        kept, masks, dropped = [], [], []
        for t, q in zip(tags, per_tag):
            if q.numel() == 0:
                dropped.append(t)
                continue
            cx, cy, bw, bh = boxes[q].float().cpu().unbind(-1)
            xyxy = torch.stack([(cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h], -1)
            s_in = self.sam_proc(images=image, input_boxes=[xyxy.tolist()], return_tensors="pt").to(self.device)
            with torch.no_grad():
                s_out = self.sam(pixel_values=s_in["pixel_values"].to(self.dtype),
                                 input_boxes=s_in["input_boxes"].to(self.dtype), multimask_output=False)
            m = self.sam_proc.post_process_masks(s_out.pred_masks.float().cpu(), s_in["original_sizes"].cpu(),
                                                 s_in["reshaped_input_sizes"].cpu())[0]
            kept.append(t)
            masks.append(m.reshape(-1, h, w).any(0).numpy())
        return Grounding(kept, np.stack(masks) if masks else np.zeros((0, h, w), bool), dropped)


class CombinedGrounder:
    """Text tags (and optional recognised words) from the OCR grounder, every other tag from
    Grounded-SAM; either part may be None (its tags are then dropped)."""

    def __init__(self, sam: GroundedSAMGrounder | None, ocr: OCRGrounder | None):
        self.sam, self.ocr = sam, ocr

    def ground(self, image: np.ndarray, tags: list[str]) -> Grounding:
        h, w = image.shape[:2]
        tags = [t for t in (_clean_tag(t) for t in tags) if t]
        text = [t for t in tags if self.ocr is not None and self.ocr.handles(t)]
        other = [t for t in tags if t not in text]
        parts = []
        if self.ocr is not None:
            parts.append(self.ocr.ground(image, text))
        if self.sam is not None:
            parts.append(self.sam.ground(image, other))
        else:
            parts.append(Grounding([], np.zeros((0, h, w), bool), other))
        kept = {t: m for g in parts for t, m in zip(g.tags, g.masks)}
        order = [t for t in tags if t in kept] + [t for t in kept if t not in tags]  # words last
        dropped = [t for g in parts for t in g.dropped]
        masks = np.stack([kept[t] for t in order]) if order else np.zeros((0, h, w), bool)
        return Grounding(order, masks, dropped)


def make_grounder(grounding: str = "grounded-sam+ocr", *, ocr_engine="rapidocr-ppocrv4", ocr_words=False,
                  text_tags=TEXT_TAGS, dino=None, sam=None, allow_download=None, device=None, dtype=None,
                  box_threshold: float = 0.3, text_threshold: float = 0.25) -> CombinedGrounder:
    """The grounder for ``grounding`` (one of ``GROUNDINGS``); Grounded-SAM's weights are resolved
    here (FolderMissingError naming both folders' places when absent)."""
    if grounding not in GROUNDINGS:
        raise ValueError(f"grounding must be one of {', '.join(GROUNDINGS)}; got {grounding!r}")
    ocr = OCRGrounder(ocr_engine, text_tags=text_tags, words=ocr_words) if "ocr" in grounding else None
    gsam = None
    if "grounded-sam" in grounding:
        gsam = GroundedSAMGrounder(dino=dino, sam=sam, allow_download=allow_download, device=device,
                                   dtype=dtype, box_threshold=box_threshold, text_threshold=text_threshold)
    return CombinedGrounder(gsam, ocr)


# -- prompt tokens ---------------------------------------------------------------------------------
def tag_token_index(tokenizer, prompt: str, spans: list[tuple[int, int]]):
    """``T`` long tensor (T = the tokenizer's context, 77): for each token of ``prompt`` (padded as
    the text encoder sees it) the index of the tag whose character span ``spans[k]`` it belongs to,
    or -1 (a token free of any tag: start/end/padding, separators, other words).

    Spans must start and end on word boundaries (tags separated by ", "), where CLIP's tokenizer
    splits, so a prefix tokenises to the same tokens as inside the whole prompt."""
    import torch

    n = tokenizer.model_max_length
    idx = torch.full((n,), -1, dtype=torch.long)

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False).input_ids)

    for k, (a, b) in enumerate(spans):
        lo, hi = 1 + count(prompt[:a]), 1 + count(prompt[:b])  # +1: the start token
        idx[min(lo, n - 1):min(hi, n - 1)] = k  # truncated like the prompt (last slot: end token)
    return idx


# -- SRCA -------------------------------------------------------------------------------------------
def _grid(h: int, w: int, n: int) -> tuple[int, int]:
    """The h_l x w_l grid with h_l·w_l = n reached from h x w by stride-2 convs (ceil halving)."""
    while h * w > n and (h > 1 or w > 1):
        h, w = (h + 1) // 2, (w + 1) // 2
    if h * w != n:
        raise ValueError(f"cannot place {n} attention queries on a grid halved from the latent")
    return h, w


class SRCAState:
    """What the SRCA processors read during one UNet call (set by the sampler for each tile).

    masks: ``B x K x h x w`` bool at the latent (tile) grid, K = the most tags of any image
           (missing tags all False). tags: ``B x T`` long, the tag index of every text token or -1.
    B is the UNet's batch (with CFG: the unconditional rows carry tags = -1 everywhere).
    ``None`` masks = SRCA off (plain attention).
    """

    def __init__(self):
        self.masks = self.tags = None
        self._cache: dict[int, object] = {}

    def set(self, masks, tags) -> None:
        self.masks, self.tags = masks, tags
        self._cache = {}

    def clear(self) -> None:
        self.set(None, None)

    def token_mask(self, n: int):
        """``B x 1 x n x T`` bool (True = the pair may attend) for a layer with ``n`` queries, or
        None when no row is restricted."""
        import torch
        import torch.nn.functional as F

        if self.masks is None or not bool((self.tags >= 0).any()):
            return None
        if n not in self._cache:
            b, k, h, w = self.masks.shape
            hl, wl = _grid(h, w, n)
            m = F.adaptive_max_pool2d(self.masks.float(), (hl, wl)) > 0 if (hl, wl) != (h, w) else self.masks
            m = torch.cat([torch.ones(b, 1, hl * wl, dtype=torch.bool, device=m.device),
                           m.reshape(b, k, hl * wl)], 1)  # slot 0: tokens of no tag
            tok = (self.tags + 1).to(m.device)  # B x T
            allowed = m.gather(1, tok[:, :, None].expand(-1, -1, hl * wl))  # B x T x n
            allowed = allowed.transpose(1, 2)
            allowed = allowed | ~allowed.any(-1, keepdim=True)  # a row with no valid token: leave it
            self._cache[n] = allowed[:, None] if not bool(allowed.all()) else None
        return self._cache[n]


def srca_weights(query, key, allowed, scale: float):
    """The SRCA attention weights, explicitly: ``softmax(q·kᵀ·scale)`` with disallowed pairs zeroed
    and each restricted row renormalised over its allowed pairs (unrestricted rows untouched). query ``B x H x n x d``, key ``B x H x T x d``,
    allowed ``B x 1 x n x T`` bool (or None). Returns ``B x H x n x T`` float, rows summing to 1."""
    import torch

    a = torch.softmax((query @ key.transpose(-1, -2)).float() * scale, -1)
    if allowed is None:
        return a
    b = a * allowed
    return torch.where(allowed.all(-1, keepdim=True), a, b / b.sum(-1, keepdim=True))


class SRCAProcessor:
    """A diffusers attention processor for the text cross-attention layers: ``AttnProcessor2_0``'s
    computation, with the SRCA mask of :class:`SRCAState` applied when one is set."""

    def __init__(self, state: SRCAState):
        self.state = state

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None,
                 *args, **kwargs):
        import torch.nn.functional as F

        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch_size, channel, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch_size, channel, height * width).transpose(1, 2)
        n_query = hidden_states.shape[1]
        batch_size, sequence_length, _ = (
            hidden_states.shape if encoder_hidden_states is None else encoder_hidden_states.shape)
        if attention_mask is not None:
            attention_mask = attn.prepare_attention_mask(attention_mask, sequence_length, batch_size)
            attention_mask = attention_mask.view(batch_size, attn.heads, -1, attention_mask.shape[-1])
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        query = attn.to_q(hidden_states)
        if encoder_hidden_states is None:
            encoder_hidden_states = hidden_states
        elif attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        key = attn.to_k(encoder_hidden_states)
        value = attn.to_v(encoder_hidden_states)
        inner_dim = key.shape[-1]
        head_dim = inner_dim // attn.heads
        query = query.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        key = key.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        value = value.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)
        allowed = self.state.token_mask(n_query)
        if allowed is not None:
            if allowed.shape[0] != batch_size or allowed.shape[-1] != key.shape[2]:
                raise ValueError(f"SRCA mask {tuple(allowed.shape)} does not fit attention batch {batch_size} "
                                 f"x {n_query} queries x {key.shape[2]} tokens")
            allowed = allowed.to(query.device)
            if attention_mask is not None:  # additive float mask: block the disallowed pairs too
                attention_mask = attention_mask.masked_fill(~allowed, float("-inf"))
            else:
                attention_mask = allowed
        hidden_states = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask,
                                                       dropout_p=0.0, is_causal=False)
        hidden_states = hidden_states.transpose(1, 2).reshape(batch_size, -1, attn.heads * head_dim)
        hidden_states = hidden_states.to(query.dtype)
        hidden_states = attn.to_out[0](hidden_states)
        hidden_states = attn.to_out[1](hidden_states)
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(batch_size, channel, height, width)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor


def text_cross_attention_names(unet) -> list[str]:
    """Processor names of the UNet's text cross-attention layers (``attn2`` of the ``attentions``
    transformers; SeeSR's ``image_attentions`` are excluded): 16 in SD-2."""
    return [k for k in unet.attn_processors if ".attentions." in k and k.endswith("attn2.processor")]


def install_srca(unet, state: SRCAState) -> list[str]:
    """Put :class:`SRCAProcessor` on the text cross-attention layers of ``unet`` (others unchanged)."""
    names = text_cross_attention_names(unet)
    procs = dict(unet.attn_processors)
    for k in names:
        procs[k] = SRCAProcessor(state)
    unet.set_attn_processor(procs)
    return names


# -- STCFG ------------------------------------------------------------------------------------------
def stcfg(eps_uncond, eps_text, scale: float, ungrounded):
    """``(1−M)[ε_∅ + s(ε_y − ε_∅)] + M·ε_∅`` with ``M = ungrounded`` (N x 1 x h x w, 1 on
    ungrounded latent cells; None = 0 everywhere, i.e. standard CFG). M = 0 gives standard CFG and
    M = 1 gives ε_∅, both exactly."""
    cfg = eps_uncond + scale * (eps_text - eps_uncond)
    if ungrounded is None:
        return cfg
    m = ungrounded.to(cfg.dtype)
    return (1 - m) * cfg + m * eps_uncond


def latent_masks(masks: np.ndarray, size: tuple[int, int], pad_to: tuple[int, int], factor: int = 8):
    """Grounding masks (``K x h x w`` bool at the LR image) -> ``K x H/f x W/f`` bool on the latent
    grid: nearest-resized to ``size`` (the upscaled image), zero-padded to ``pad_to`` (multiples of
    ``factor``), max-pooled by ``factor`` (a latent cell is grounded when any pixel under it is)."""
    import torch
    import torch.nn.functional as F

    m = torch.from_numpy(np.ascontiguousarray(masks)).float()[None]
    if m.shape[1] == 0:
        return torch.zeros(0, pad_to[0] // factor, pad_to[1] // factor, dtype=torch.bool)
    m = F.interpolate(m, size=size, mode="nearest")
    m = F.pad(m, (0, pad_to[1] - size[1], 0, pad_to[0] - size[0]))
    return (F.max_pool2d(m, factor) > 0)[0]
