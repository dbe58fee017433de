"""RAM / DAPE image tagger: tags (and SeeSR's image embedding) for diffusion SR prompts.

RAM: Zhang et al., "Recognize Anything: A Strong Image Tagging Model" (2023), github.com/xinyu1205/recognize-anything
(Apache-2.0). DAPE: RAM with a LoRA fine-tuned on degraded images, from SeeSR (Wu et al., CVPR 2024,
github.com/cswry/SeeSR, Apache-2.0), used by OSEDiff (github.com/cswry/OSEDiff, Apache-2.0) and CODSR.
The network is our own port (``models.sr.archs.ram_arch``); the official ``ram`` package is not needed.

Inference as the official ``ram_lora.RAMLora.generate_tag`` / ``generate_image_embeds`` with
``ram(pretrained=ram_swin_large_14m.pth, pretrained_condition=DAPE.pth, image_size=384, vit="swin_l")``
followed by ``.eval()``, on images prepared as ``test_osediff.py`` / ``test_seesr.py`` do:

- Input: N x 3 x H x W in [0, 1], resized to 384 x 384 (bilinear; *without* antialiasing by default, as
  torchvision 0.15's ``transforms.Resize`` does on tensors in the authors' pinned environment, torch 2.0.1;
  ``antialias=True`` gives torchvision >= 0.17's default), ImageNet mean/std normalisation.
- Tags: sigmoid(logit) > the tag's threshold from ``ram_tag_list_threshold.txt`` (4585 values; OSEDiff's
  ``max_threthold=0.9, add_threthold=0`` rule leaves them unchanged), no tag deleted, English names from
  ``ram_tag_list.txt`` in class order, joined with ", " (the OSEDiff/SeeSR copy; the original RAM joins
  with " | ").
- Image embedding: ``image_proj(visual_encoder(x))``, N x 145 x 512.

Weights, through ``models.weights.resolve`` (explicit path -> ``$TEXTSR_WEIGHTS`` -> HF cache -> download
when allowed):

- ``ram_swin_large_14m.pth`` (HF ``xinyu1205/recognize_anything_model``): the whole RAM training model under
  ``"model"``. Loaded strictly after what the official loader and RAM's tagging also set aside:
  ``tag_encoder.*`` and ``text_decoder.*`` (the captioning/interaction BERTs RAM's tagging never runs),
  the ``relative_position_index``/``attn_mask`` buffers (recomputed); old ``vision_multi.*`` names are
  renamed ``tagging_head.*`` as the official loader does. The official model ties the tagging head's
  layers to ``tag_encoder``'s lowest layers; a tagging-head tensor the file lacks is taken from its tied
  ``tag_encoder`` twin (the value the official loader would leave in the shared parameter).
- ``DAPE.pth``: only loralib ``lora_A``/``lora_B`` tensors (SeeSR's ``save_network_lora``). Those of the
  visual encoder's ``qkv`` and the tagging head's cross-attention ``query``/``key`` load strictly; those of
  ``text_decoder`` and ``tag_encoder`` are set aside, except that, as the official ``.eval()`` merges every
  loralib layer into its (tied) weight, ``tag_encoder`` layer 0/1 cross-attention query/key updates are
  added to the tagging head's weights too (zero for the published training recipe: those LoRA ``B``
  matrices start at zero and get no gradient).
- Tag list and thresholds: two small text files of the recognize-anything repo (identical in the OSEDiff
  and SeeSR copies), resolved like weights: ``$TEXTSR_WEIGHTS/ram_tag_list.txt`` and
  ``ram_tag_list_threshold.txt``, an explicit path (e.g. ``tag_list=CLONE/ram/data``), or a download of the
  raw GitHub file at a pinned commit when downloads are allowed. The resolver's copies are sha256-checked;
  an explicit file is used as given (e.g. the official ``ram_tag_list_chinese.txt``).

Checked once against the official code (OSEDiff's ``ram`` package, full size, random weights with
non-zero LoRA): image embedding within 3e-6, logits within 7e-7, identical tags, for RAM and DAPE.
"""
from __future__ import annotations

from pathlib import Path

from models.files import sha256_file
from models.weights import WeightsFile, resolve

RAM_SWIN_L = WeightsFile("ram_swin_large_14m.pth", hf_repo="xinyu1205/recognize_anything_model")
DAPE = WeightsFile("DAPE.pth", homepage="https://drive.google.com/file/d/1KIV6VewwO2eDC9g4Gcvgm-a0LDI7Lmwm "
                                        "(OSEDiff README)")
_DATA = ("https://raw.githubusercontent.com/xinyu1205/recognize-anything/"
         "7cb804a8609e9f4b1a50b7f31436d2df40bb9481/ram/data/")
RAM_TAG_LIST = WeightsFile("ram_tag_list.txt", url=_DATA + "ram_tag_list.txt",
                           sha256="5d96d2f7225527480ad773aaac76b6e5c08a18adf6eae9ca7d2ab923d5e7bd8b")
RAM_TAG_THRESHOLDS = WeightsFile("ram_tag_list_threshold.txt", url=_DATA + "ram_tag_list_threshold.txt",
                                 sha256="b6f81d0de1bc7f9c251af512c413eae976c77dbfbadf700d4e3d90510f4c6447")
TAGGER_FILES = (RAM_SWIN_L, DAPE, RAM_TAG_LIST, RAM_TAG_THRESHOLDS)
DAPE_RANK = 8
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SET_ASIDE = ("tag_encoder.", "text_decoder.")  # RAM's captioning BERTs: in the file, never run for tags
COMPUTED = (".relative_position_index", ".attn_mask")


# -- files -----------------------------------------------------------------------------------------
def read_tags(path) -> list[str]:
    """One English tag per line (``str.splitlines``, as the official ``load_tag_list``)."""
    return Path(path).read_text(encoding="utf-8").splitlines()


def read_thresholds(path, n: int):
    """The per-class thresholds (float32 tensor of length ``n``); raises when the file has another count."""
    import torch

    values = [float(s.strip()) for s in Path(path).read_text(encoding="utf-8").splitlines() if s.strip()]
    if len(values) != n:
        raise ValueError(f"{path}: {len(values)} thresholds for {n} tags; the threshold file must have one "
                         f"line per line of the tag list (official: 4585 each)")
    return torch.tensor(values, dtype=torch.float32)


def _load(path, what: str) -> dict:
    """A checkpoint's tensors (memory-mapped when the file allows: the RAM release also holds RAM's
    other parts), the ``"model"`` entry when there is one; ``module.`` prefixes stripped."""
    import torch

    from models.sr.checkpoint import CheckpointError

    try:
        try:
            ck = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as e:
            if "mmap" not in str(e):
                raise
            ck = torch.load(path, map_location="cpu", weights_only=True)  # a legacy (non-zip) file
    except Exception as e:  # noqa: BLE001 — any unpickling failure means the same to the user
        raise CheckpointError(f"{path}: cannot read as a PyTorch checkpoint ({type(e).__name__}: {e})") from None
    sd = ck.get("model", ck) if isinstance(ck, dict) else ck
    if not isinstance(sd, dict) or not all(hasattr(v, "shape") for v in sd.values()):
        raise CheckpointError(f"{path}: expected {what} as a dict of tensors (or one under 'model')")
    return {k[7:] if k.startswith("module.") else k: v for k, v in sd.items()}


# -- loading ---------------------------------------------------------------------------------------
def ram_state(sd: dict, net) -> dict:
    """The official RAM checkpoint's tensors for ``net`` (see module doc for what is set aside)."""
    sd = {("tagging_head." + k[len("vision_multi."):] if k.startswith("vision_multi.") else k): v
          for k, v in sd.items()}
    for k in net.state_dict():
        if k.startswith("tagging_head.") and k not in sd and "lora_" not in k:
            twin = "tag_encoder." + k[len("tagging_head."):]
            if twin in sd:
                sd[k] = sd[twin]
    return {k: v for k, v in sd.items() if not k.startswith(SET_ASIDE) and not k.endswith(COMPUTED)}


def load_ram(net, path) -> dict:
    """Load ``ram_swin_large_14m.pth`` into ``net`` (``RAM``) strictly; LoRA parameters stay as they are."""
    from models.sr.checkpoint import check_keys

    sd = ram_state(_load(path, "RAM's state dict"), net)
    own = {k: v for k, v in net.state_dict().items() if "lora_" not in k}
    check_keys(own, sd, f"{path} does not fit RAM ({net.cfg.num_classes} tags)",
               "Is it ram_swin_large_14m.pth, with the matching 4585-line tag list?")
    net.load_state_dict(sd, strict=False)  # every non-LoRA key checked above; LoRA keys come from DAPE
    return {"path": str(path), "sha256": sha256_file(Path(path)), "source": RAM_SWIN_L.source}


def dape_state(sd: dict, net) -> tuple[dict, dict]:
    """Split DAPE's LoRA tensors: (those of ``net``, extra weight updates of the tied tagging-head modules)."""
    from models.sr.archs.ram_arch import lora_delta
    from models.sr.checkpoint import CheckpointError

    own = {k: v for k, v in sd.items() if not k.startswith(SET_ASIDE)}
    tied = {}
    for name, m in net.lora_modules().items():
        twin = "tag_encoder" + name[len("tagging_head"):]
        a, b = sd.get(twin + ".lora_A"), sd.get(twin + ".lora_B")
        if not name.startswith("tagging_head.") or a is None or b is None:
            continue
        if (tuple(a.shape), tuple(b.shape)) != (tuple(m.lora_A.shape), tuple(m.lora_B.shape)):
            raise CheckpointError(f"{twin}: LoRA of shape {tuple(a.shape)}/{tuple(b.shape)}, but its tied "
                                  f"{name} has {tuple(m.lora_A.shape)}/{tuple(m.lora_B.shape)}")
        if b.any():
            tied[name] = lora_delta(a, b, (True,), m.out_features)
    return own, tied


def load_dape(net, path) -> dict:
    """Load ``DAPE.pth``'s LoRA into ``net`` (built with ``lora_rank=8``) strictly, then merge it."""
    from models.sr.checkpoint import check_keys

    sd, tied = dape_state(_load(path, "DAPE's LoRA tensors"), net)
    own = {k: v for k, v in net.state_dict().items() if "lora_" in k}
    check_keys(own, sd, f"{path} does not fit RAM's LoRA (rank {net.cfg.lora_rank})",
               "Is it DAPE.pth (loralib lora_A/lora_B tensors of SeeSR's RAM)?")
    net.load_state_dict(sd, strict=False)  # every LoRA key checked above
    net.merge_lora(tied)
    return {"path": str(path), "sha256": sha256_file(Path(path)), "tied_updates": sorted(tied)}


def build_ram(ram_path, dape_path=None, *, num_classes: int = 4585, config=None):
    """RAM (``dape_path`` None) or DAPE, loaded, merged, in eval mode, float32 on the CPU; and its record."""
    from dataclasses import replace

    from models.sr.archs.ram_arch import RAM, RAMConfig

    cfg = replace(config or RAMConfig(), num_classes=num_classes, lora_rank=DAPE_RANK if dape_path else 0)
    net = RAM(cfg)
    info = {"ram": load_ram(net, ram_path)}
    if dape_path is not None:
        info["dape"] = load_dape(net, dape_path)
    return net.eval().requires_grad_(False), info


# -- the tagger ------------------------------------------------------------------------------------
class RAMTagger:
    """RAM (``dape=False``) or DAPE behind a batch interface (see module doc).

    ram_weights / dape_weights / tag_list / tag_thresholds: explicit files (or folders holding them);
    default: the resolver. An explicit tag list is used as given (e.g. the official
    ``ram_tag_list_chinese.txt``, same classes); the resolver's copies are sha256-checked.
    config: the architecture (default Swin-L; tests pass a tiny one).
    device / dtype: where the network runs (float32 on the CPU by default).

    ``tags(images)``: N x 3 x H x W in [0, 1] -> N strings, tags joined with ", " ("" when none fires).
    ``tag_lists(images)``: -> N lists of tags. ``image_embeds(images)``: -> N x 145 x 512 (the network's dtype).
    ``tags_and_embeds(images)``: both from one visual-encoder pass.
    """

    def __init__(self, *, dape: bool = True, ram_weights=None, dape_weights=None, tag_list=None,
                 tag_thresholds=None, config=None, allow_download: bool | None = None, device=None, dtype=None,
                 antialias: bool = False):
        from dataclasses import replace

        import torch

        self.kind = "dape" if dape else "ram"
        ram_path = resolve(RAM_SWIN_L, explicit=ram_weights, allow_download=allow_download)
        dape_path = resolve(DAPE, explicit=dape_weights, allow_download=allow_download) if dape else None
        # an explicit list is the user's choice (e.g. the official ram_tag_list_chinese.txt): no checksum
        tags_path = resolve(RAM_TAG_LIST if tag_list is None else replace(RAM_TAG_LIST, sha256=None),
                            explicit=tag_list, allow_download=allow_download)
        thr_path = resolve(RAM_TAG_THRESHOLDS if tag_thresholds is None else replace(RAM_TAG_THRESHOLDS, sha256=None),
                           explicit=tag_thresholds, allow_download=allow_download)
        self.tag_names = read_tags(tags_path)
        self.thresholds = read_thresholds(thr_path, len(self.tag_names))
        net, self.info = build_ram(ram_path, dape_path, num_classes=len(self.tag_names), config=config)
        self.info.update(tag_list=str(tags_path), tag_thresholds=str(thr_path))
        self.device = torch.device(device or "cpu")
        self.dtype = dtype or torch.float32
        self.net = net.to(self.device, self.dtype)
        self.size = net.cfg.image_size
        self.antialias = bool(antialias)

    def preprocess(self, images):
        """N x 3 x H x W in [0, 1] -> N x 3 x S x S, ImageNet-normalised, on the tagger's device/dtype."""
        import torch
        import torch.nn.functional as F

        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"{self.kind} tagger: expected N x 3 x H x W images in [0, 1], got {tuple(images.shape)}")
        x = F.interpolate(images.float(), size=(self.size, self.size), mode="bilinear", align_corners=False,
                          antialias=self.antialias)
        mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
        return ((x - mean) / std).to(self.device, self.dtype)

    def _decide(self, logits) -> list[list[str]]:
        import torch

        hit = torch.sigmoid(logits).float().cpu() > self.thresholds
        return [[self.tag_names[i] for i in row.nonzero().flatten().tolist()] for row in hit]

    def tags_and_embeds(self, images):
        """-> (N lists of tags, N x T x 512 image embedding)."""
        import torch

        with torch.no_grad():
            emb = self.net.image_embeds(self.preprocess(images))
            return self._decide(self.net.logits_from_embeds(emb)), emb

    def tag_lists(self, images) -> list[list[str]]:
        return self.tags_and_embeds(images)[0]

    def tags(self, images) -> list[str]:
        return [", ".join(t) for t in self.tag_lists(images)]

    def image_embeds(self, images):
        import torch

        with torch.no_grad():
            return self.net.image_embeds(self.preprocess(images))

    def describe(self) -> str:
        return f"{self.kind} ({len(self.tag_names)} tags)"
