"""SeeSR and SeeSR + SRSR on the tiny random SD (CPU, 2-3 steps, 16-64 px inputs)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import word_crop


@pytest.fixture(scope="module")
def lr():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(1, 3, 6, 8, generator=g)  # smooth content: bicubic-enlarged noise
    return torch.nn.functional.interpolate(x, size=(24, 32), mode="bicubic", align_corners=False).clamp(0, 1)


def seesr(**kw):
    from models.sr.registry import create_sr

    return create_sr(kw.pop("name", "seesr-tiny"), **{"steps": 2, **kw})


@pytest.fixture
def no_weights(tmp_path, monkeypatch):
    """Empty weights dir and HF cache, downloads off: the resolver finds nothing."""
    monkeypatch.setenv("TEXTSR_WEIGHTS", str(tmp_path / "weights"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.delenv("TEXTSR_ALLOW_DOWNLOAD", raising=False)
    return tmp_path


# -- the networks ---------------------------------------------------------------------------------
def test_image_attention_follows_every_text_attention():
    from models.sr.seesr import tiny_seesr_nets

    unet, cn = tiny_seesr_nets()
    for net, blocks in ((unet, ("down_blocks.0", "mid_block", "up_blocks.1")), (cn, ("down_blocks.0", "mid_block"))):
        sd = net.state_dict()
        for b in blocks:
            n_text = len({k.split(".attentions.")[1].split(".")[0] for k in sd if k.startswith(b + ".attentions.")})
            n_img = len({k.split(".image_attentions.")[1].split(".")[0] for k in sd if k.startswith(b + ".image_attentions.")})
            assert n_text == n_img > 0, b
        k = "down_blocks.0.image_attentions.0.transformer_blocks.0.attn2.to_k.weight"
        assert tuple(sd[k].shape) == (32, 16)  # block channels x image_cross_attention_dim
    x, t = torch.randn(1, 4, 8, 8), torch.tensor([10])
    with pytest.raises(ValueError, match="image_encoder_hidden_states"):
        unet(x, t, encoder_hidden_states=torch.randn(1, 5, 32))
    y1 = unet(x, t, encoder_hidden_states=torch.randn(1, 5, 32), image_encoder_hidden_states=torch.zeros(1, 3, 16)).sample
    y2 = unet(x, t, encoder_hidden_states=torch.randn(1, 5, 32), image_encoder_hidden_states=torch.ones(1, 3, 16)).sample
    assert not torch.equal(y1, y2)  # the embedding reaches the image attention


def test_sd2_sized_networks_match_the_released_files():
    """On the meta device (no memory): SD-2-base's UNet with image attention has 1126.76 M
    parameters and the ControlNet 489.03 M, i.e. 4.51 + 1.96 GB in fp32 — the Hub's ``seesr/``
    folder is 6.46 GB, its ``controlnet/`` 1.96 GB; 16 text cross-attention layers carry SRCA."""
    from models.sr.archs.seesr_unet import build_seesr_model, seesr_classes
    from models.sr.diffusion.components import sd21_base_configs
    from models.sr.srsr import text_cross_attention_names

    with torch.device("meta"):
        unet = build_seesr_model("unet", sd21_base_configs()["unet"])
        cn = seesr_classes()[1].from_unet(unet, load_weights_from_unet=False)
        cn.enable_image_attention()
    assert sum(p.numel() for p in unet.parameters()) == 1_126_760_324
    assert sum(p.numel() for p in cn.parameters()) == 489_031_440
    assert len(text_cross_attention_names(unet)) == 16
    sd = unet.state_dict()
    assert tuple(sd["down_blocks.0.image_attentions.0.transformer_blocks.0.attn2.to_k.weight"].shape) == (320, 512)
    assert tuple(sd["mid_block.image_attentions.0.proj_in.weight"].shape) == (1280, 1280)


# -- the model -------------------------------------------------------------------------------------
def test_shape_range_and_seed(lr):
    m = seesr()
    y = m.upscale(lr)
    assert y.shape == (1, 3, 96, 128) and y.dtype == torch.float32
    assert 0 <= y.min() and y.max() <= 1
    assert torch.equal(y, m.upscale(lr))  # same seed, same output
    pair = m.upscale(torch.cat([lr.flip(-1), lr]))  # an image's result does not depend on its batch
    # (up to rounding: batched kernels sum in another order, ~1e-5 after two guided steps)
    assert torch.allclose(pair[1:], y, atol=1e-4) and not torch.allclose(pair[:1], y.flip(-1), atol=1e-3)
    assert not torch.equal(y, seesr(seed=1).upscale(lr))
    assert m.last_prompts[0].endswith(", ,clean, high-resolution, 8k")  # f"{tags}, {prompt}," + added


def test_tiled_close_to_untiled(lr):
    # 12x16 latent, 8x8 tiles overlapping by 4 (2x3 tiles). Tiles see only their own context
    # (self-attention and convolutions stop at the tile edge), so outputs differ near tile borders;
    # the bound: that difference stays well below the method's own sampling variation (what a
    # different seed changes), here a quarter of it. A tile covering the latent runs it whole.
    a = seesr(tile=0, color_fix="none").upscale(lr)
    b = seesr(tile=8, tile_overlap=4, color_fix="none").upscale(lr)
    c = seesr(tile=0, color_fix="none", seed=1).upscale(lr)
    assert (a - b).abs().mean() < 0.25 * (a - c).abs().mean()
    assert torch.equal(a, seesr(tile=16, color_fix="none").upscale(lr))


def test_official_folders_load_strictly_and_change_the_output(lr, tmp_path):
    from safetensors.torch import load_file, save_file

    from models.sr.checkpoint import CheckpointError
    from models.sr.seesr import write_tiny_seesr

    ck = write_tiny_seesr(tmp_path / "ck", seed=1)
    cfg = json.loads((ck / "unet" / "config.json").read_text())
    assert cfg["_class_name"] == "UNet2DConditionModel" and cfg["use_image_cross_attention"] is True
    y0 = seesr().upscale(lr)
    y1 = seesr(weights=ck).upscale(lr)
    assert (y0 - y1).abs().mean() > 1e-3
    # the HF repo layout (seesr/unet, seesr/controlnet) is accepted too
    write_tiny_seesr(tmp_path / "repo" / "seesr", seed=1)
    assert torch.equal(y1, seesr(weights=tmp_path / "repo").upscale(lr))

    f = ck / "controlnet" / "diffusion_pytorch_model.safetensors"
    sd = load_file(str(f))
    k = "mid_block.image_attentions.0.proj_out.weight"
    sd[k.replace("image_attentions", "image_attention")] = sd.pop(k)
    save_file(sd, str(f))
    with pytest.raises(CheckpointError) as e:
        seesr(weights=ck)
    assert "missing (e.g. mid_block.image_attentions.0.proj_out.weight)" in str(e.value)
    assert "unexpected (e.g. mid_block.image_attention.0.proj_out.weight)" in str(e.value)


def test_missing_base_checkpoint_and_dape(no_weights, tmp_path):
    from models.sr.diffusion.components import write_tiny_base
    from models.sr.seesr import write_tiny_seesr
    from models.weights import WeightsMissingError

    with pytest.raises(WeightsMissingError) as e:
        seesr(name="seesr")
    msg = str(e.value)
    for part in ("stable-diffusion-2-base", "TEXTSR_WEIGHTS", "Hugging Face cache",
                 "huggingface.co/stabilityai/stable-diffusion-2-base", "huggingface-cli download"):
        assert part in msg
    base = write_tiny_base(tmp_path / "base")
    with pytest.raises(WeightsMissingError, match=r"(?s)'seesr'.*CSWRY/SeeSR.*huggingface-cli download CSWRY/SeeSR"):
        seesr(name="seesr", base=base)
    ck = write_tiny_seesr(tmp_path / "ck")
    with pytest.raises(WeightsMissingError, match=r"(?s)DAPE\.pth.*CSWRY/SeeSR"):
        seesr(name="seesr", base=base, weights=ck)  # prompt="dape" by default
    # without DAPE: a fixed prompt, zero image embedding; the real folder loaders
    m = seesr(name="seesr", base=base, weights=ck, prompt="a sign", process_size=0)
    assert m.image_embeds == "zeros" and m.tagger is None
    y = m.upscale(torch.rand(1, 3, 16, 16))
    assert y.shape == (1, 3, 64, 64) and m.last_prompts == ["a sign, ,clean, high-resolution, 8k"]


# -- SRCA / STCFG ----------------------------------------------------------------------------------
def _attention():
    from diffusers.models.attention_processor import Attention

    torch.manual_seed(0)
    return Attention(query_dim=32, cross_attention_dim=16, heads=2, dim_head=8).eval()


def test_srca_with_all_ones_mask_is_plain_attention():
    from diffusers.models.attention_processor import AttnProcessor2_0

    from models.sr.srsr import SRCAProcessor, SRCAState

    attn, h, enc = _attention(), torch.randn(2, 12, 32), torch.randn(2, 5, 16)
    plain = AttnProcessor2_0()(attn, h, enc)
    state = SRCAState()
    proc = SRCAProcessor(state)
    assert torch.equal(proc(attn, h, enc), plain)  # no mask set
    tags = torch.tensor([[-1, -1, -1, -1, -1], [-1, 0, 0, 1, -1]])
    state.set(torch.ones(2, 2, 3, 4, dtype=torch.bool), tags)  # every tag grounded everywhere
    assert torch.equal(proc(attn, h, enc), plain)


def test_srca_masks_pairs_and_renormalises_rows():
    from models.sr.srsr import SRCAProcessor, SRCAState, srca_weights

    attn, h, enc = _attention(), torch.randn(2, 12, 32), torch.randn(2, 5, 16)
    masks = torch.zeros(2, 2, 3, 4, dtype=torch.bool)
    masks[1, 0, :, :2] = True  # tag 0 grounded on the left half, tag 1 nowhere (of a 3x4 latent)
    tags = torch.tensor([[-1, -1, -1, -1, -1], [-1, 0, 0, 1, -1]])
    state = SRCAState()
    state.set(masks, tags)
    allowed = state.token_mask(12)  # 12 queries = the 3x4 grid itself
    assert allowed.shape == (2, 1, 12, 5)
    assert allowed[0].all() and allowed[1, 0, :, [0, 4]].all()  # free tokens: everywhere
    left = torch.tensor([c < 2 for r in range(3) for c in range(4)])
    assert torch.equal(allowed[1, 0, :, 1], left) and not allowed[1, 0, :, 3].any()

    q = attn.to_q(h).view(2, -1, 2, 8).transpose(1, 2)
    k = attn.to_k(enc).view(2, -1, 2, 8).transpose(1, 2)
    v = attn.to_v(enc).view(2, -1, 2, 8).transpose(1, 2)
    w = srca_weights(q, k, allowed, attn.scale)
    assert (w[1][:, ~left][..., 1:3] == 0).all() and (w[1][..., 3] == 0).all()
    assert torch.allclose(w.sum(-1), torch.ones(2, 2, 12), atol=1e-6)
    assert torch.equal(w[0], srca_weights(q, k, None, attn.scale)[0])  # unrestricted rows untouched
    ref = attn.to_out[0]((w @ v).transpose(1, 2).reshape(2, 12, 16))
    assert torch.allclose(SRCAProcessor(state)(attn, h, enc), ref, atol=1e-5)
    # a coarser layer (2x2 of the 3x4 grid): max-pooled masks
    assert state.token_mask(4)[1, 0, :, 1].tolist() == [True, False, True, False]


def test_stcfg():
    from models.sr.srsr import stcfg

    g = torch.Generator().manual_seed(0)
    eu, ey = torch.randn(1, 4, 3, 4, generator=g), torch.randn(1, 4, 3, 4, generator=g)
    cfg = eu + 5.5 * (ey - eu)
    assert torch.equal(stcfg(eu, ey, 5.5, torch.zeros(1, 1, 3, 4)), cfg)
    assert torch.equal(stcfg(eu, ey, 5.5, None), cfg)
    assert torch.equal(stcfg(eu, ey, 5.5, torch.ones(1, 1, 3, 4)), eu)
    m = torch.zeros(1, 1, 3, 4)
    m[..., 0] = 1
    out = stcfg(eu, ey, 5.5, m)
    assert torch.equal(out[..., 0], eu[..., 0]) and torch.equal(out[..., 1:], cfg[..., 1:])


def test_tag_token_index():
    from models.sr.diffusion.components import tiny_tokenizer
    from models.sr.srsr import tag_token_index

    tok = tiny_tokenizer()  # byte level: one token a character
    idx = tag_token_index(tok, "ab, cd, ,clean", [(0, 2), (4, 6)])
    assert idx[:9].tolist() == [-1, 0, 0, -1, 1, 1, -1, -1, -1] and (idx[9:] == -1).all()


def test_grounded_sam_missing_weights(no_weights):
    from models.sr.srsr import make_grounder
    from models.weights import WeightsMissingError

    with pytest.raises(WeightsMissingError, match=r"(?s)grounding-dino-tiny.*IDEA-Research/grounding-dino-tiny"):
        make_grounder("grounded-sam+ocr")


def _tiny_grounded_sam(root):
    """Random tiny Grounding DINO and SAM written as transformers folders (their real classes)."""
    from transformers import (
        BertConfig,
        BertTokenizerFast,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessor,
        GroundingDinoProcessor,
        SamConfig,
        SamImageProcessor,
        SamModel,
        SamProcessor,
        SwinConfig,
    )

    root.mkdir(parents=True, exist_ok=True)
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", "text", "sky"]
    (root / "vocab.txt").write_text("\n".join(words) + "\n")
    torch.manual_seed(0)
    dino = GroundingDinoForObjectDetection(GroundingDinoConfig(
        backbone_config=SwinConfig(embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 2], window_size=4,
                                   out_features=["stage2", "stage3", "stage4"]),
        text_config=BertConfig(vocab_size=len(words), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                               intermediate_size=37),
        d_model=32, encoder_layers=1, decoder_layers=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
        encoder_attention_heads=2, decoder_attention_heads=2, num_queries=10, encoder_n_points=2,
        decoder_n_points=2, max_text_len=32))
    dino.save_pretrained(root / "dino")
    GroundingDinoProcessor(image_processor=GroundingDinoImageProcessor(size={"shortest_edge": 64, "longest_edge": 96}),
                           tokenizer=BertTokenizerFast(vocab_file=str(root / "vocab.txt"))).save_pretrained(root / "dino")
    sam = SamModel(SamConfig(
        vision_config={"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "output_channels": 256,
                       "image_size": 64, "patch_size": 16, "window_size": 2, "global_attn_indexes": [0],
                       "mlp_dim": 32},
        prompt_encoder_config={"image_size": 64, "patch_size": 16},
        mask_decoder_config={"num_hidden_layers": 1, "num_attention_heads": 2, "mlp_dim": 32,
                             "iou_head_hidden_dim": 16}))
    sam.save_pretrained(root / "sam")
    SamProcessor(image_processor=SamImageProcessor(size={"longest_edge": 64}, pad_size={"height": 64, "width": 64})
                 ).save_pretrained(root / "sam")
    return root / "dino", root / "sam"


def test_grounded_sam_on_tiny_random_models(tmp_path):
    from models.sr.srsr import GroundedSAMGrounder

    dino, sam = _tiny_grounded_sam(tmp_path)
    img = (np.random.default_rng(0).random((40, 56, 3)) * 255).astype(np.uint8)
    g = GroundedSAMGrounder(dino=dino, sam=sam, box_threshold=0.0, text_threshold=0.0).ground(img, ["text", "sky"])
    assert g.tags == ["text", "sky"] and g.masks.shape == (2, 40, 56) and g.masks.dtype == bool
    g = GroundedSAMGrounder(dino=dino, sam=sam, box_threshold=1.0).ground(img, ["text", "sky"])
    assert g.tags == [] and g.dropped == ["text", "sky"] and g.ungrounded().all()


def test_seesr_srsr_with_text_detector_grounding():
    img = np.full((32, 64, 3), 225, np.uint8)
    w = word_crop("TEXT", size=12)
    img[6:6 + w.shape[0], 4:4 + w.shape[1]] = w
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
    m = seesr(name="seesr-srsr-tiny", grounding="ocr", prompt="text, sky")
    assert len(m.srca_layers) == 4  # the tiny UNet's text cross-attention layers (SD-2: 16)
    y = m.upscale(x)
    assert y.shape == (1, 3, 128, 256) and 0 <= y.min() and y.max() <= 1
    g = m.last_groundings[0]
    assert g.tags == ["text"] and g.dropped == ["sky"]  # "sky" has no grounding: dropped
    ys, xs = np.nonzero(g.masks[0])
    assert 4 <= xs.min() and xs.max() < 4 + w.shape[1] + 2 and 6 <= ys.min() and ys.max() < 6 + w.shape[0] + 2
    assert m.last_prompts == ["text, ,clean, high-resolution, 8k"]
    plain = seesr(prompt="text, sky").upscale(x)
    assert (y - plain).abs().mean() > 1e-4  # SRCA + STCFG change the result
