"""Our RAM / DAPE tagger port: official key layout at full size, strict loading of checkpoints written in
the official layout at a tiny size, DAPE's LoRA, per-class thresholds, prompt format, missing files."""
from __future__ import annotations

import hashlib

import pytest
import torch

TAGS = ["3D CG rendering", "sign", "letter", "shop", "sky", "tree", "person", "street sign", "car", "zoo"]
THRESHOLDS = [0.9, 0.65, 0.9, 0.69, 0.71, 0.9, 0.5, 0.8, 0.9, 0.65]


def tiny_net(lora_rank: int = 0, seed: int = 0, num_classes: int = len(TAGS)):
    from models.sr.archs.ram_arch import RAM, tiny_config

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = RAM(tiny_config(num_classes, lora_rank))
        with torch.no_grad():
            for p in net.parameters():
                p.normal_(0, 0.3)
    return net


def official_ram_state(net) -> dict:
    """``net``'s weights as RAM's training model saves them (``checkpoint["model"]``): plus the tied
    ``tag_encoder`` twins of the tagging head, the rest of ``tag_encoder``/``text_decoder`` and the
    Swin buffers (``relative_position_index``, ``attn_mask`` of shifted blocks)."""
    g = torch.Generator().manual_seed(7)
    sd = {k: v.clone() for k, v in net.state_dict().items() if "lora_" not in k}
    for k in [k for k in sd if k.startswith("tagging_head.")]:
        sd["tag_encoder" + k[len("tagging_head"):]] = sd[k]
    h = net.cfg.head_hidden
    for k in ("tag_encoder.embeddings.word_embeddings.weight",
              "tag_encoder.encoder.layer.0.attention.self.query.weight",
              "text_decoder.bert.encoder.layer.0.crossattention.self.key.weight", "text_decoder.cls.predictions.bias"):
        sd[k] = torch.randn(h, h, generator=g)
    for name, buf in net.named_buffers():
        sd[name] = buf.clone()
    return sd


def official_dape_state(net, seed: int = 1) -> dict:
    """A DAPE.pth: loralib ``lora_A``/``lora_B`` of every LoRA layer, those of RAM's other BERTs included."""
    g = torch.Generator().manual_seed(seed)
    sd = {k: torch.randn(v.shape, generator=g) * 0.3 for k, v in net.state_dict().items() if "lora_" in k}
    r, h, w = net.cfg.lora_rank, net.cfg.head_hidden, net.cfg.embed_width
    te = "tag_encoder.encoder.layer.{}.crossattention.self.{}.lora_{}"
    sd[te.format(0, "query", "A")] = torch.randn(r, h, generator=g)
    sd[te.format(0, "query", "B")] = torch.randn(h, r, generator=g)
    sd[te.format(1, "key", "A")], sd[te.format(1, "key", "B")] = torch.randn(r, w, generator=g), torch.zeros(h, r)
    sd["tag_encoder.encoder.layer.5.attention.self.key.lora_A"] = torch.randn(r, h, generator=g)
    sd["text_decoder.bert.encoder.layer.0.attention.self.query.lora_B"] = torch.randn(h, r, generator=g)
    return sd


@pytest.fixture
def files(tmp_path):
    """A tiny RAM checkpoint + DAPE file in the official layouts, a tag list and its thresholds."""
    net, lora = tiny_net(), tiny_net(lora_rank=8)
    ram, dape = tmp_path / "ram_swin_large_14m.pth", tmp_path / "DAPE.pth"
    torch.save({"model": official_ram_state(net), "optimizer": {}, "epoch": 4}, ram)
    torch.save(official_dape_state(lora), dape)
    (tmp_path / "ram_tag_list.txt").write_text("\n".join(TAGS), encoding="utf-8")  # no final newline, as RAM's
    (tmp_path / "ram_tag_list_threshold.txt").write_text("\n".join(map(str, THRESHOLDS)) + "\n")
    return {"ram_weights": ram, "dape_weights": dape, "tag_list": tmp_path, "tag_thresholds": tmp_path,
            "net": net, "lora": lora, "dir": tmp_path}


def tagger(files, **kw):
    from models.sr.archs.ram_arch import tiny_config
    from models.sr.diffusion.ram import RAMTagger

    args = {k: files[k] for k in ("ram_weights", "dape_weights", "tag_list", "tag_thresholds")}
    return RAMTagger(config=tiny_config(), **{**args, **kw})


@pytest.fixture(scope="module")
def images():
    return torch.rand(2, 3, 48, 40, generator=torch.Generator().manual_seed(3))


# -- the architecture ------------------------------------------------------------------------------
@pytest.mark.parametrize("rank, keys, numel, digest", [
    (0, 366, 212_117_045, "9892e72b4a033ef15d2aabffacf4f970adda0068c5e3d6761df1716bb398d493"),
    (8, 422, 212_739_637, "d126437415c37fe77fd84f956c555c7a1808a9992ecb5ebaf4033c9cfb1a71c5")])
def test_full_size_has_the_official_keys(rank, keys, numel, digest):
    """Key set, shapes and parameter count of RAM Swin-L (rank 0) and with DAPE's LoRA (rank 8): the
    numbers are those of the official ``ram.models.ram_lora.RAMLora(image_size=384, vit="swin_l")``
    state dict (instantiated once outside this repo) less ``tag_encoder.*``, ``text_decoder.*`` and the
    Swin buffers; the digest is sha256 of its sorted "key shape" lines."""
    from models.sr.archs.ram_arch import RAM, RAMConfig

    with torch.device("meta"):
        net = RAM(RAMConfig(lora_rank=rank))
    sd = net.state_dict()
    lines = "\n".join(f"{k} {tuple(sd[k].shape)}" for k in sorted(sd))
    assert (len(sd), sum(v.numel() for v in sd.values())) == (keys, numel)
    assert hashlib.sha256(lines.encode()).hexdigest() == digest
    assert net.cfg.tokens == 145 and net.image_proj.out_features == 512


def test_lora_update_is_loralibs():
    """MergedLinear(enable_lora=[True, False, True]): query rows get B[:d] @ A[:r], value rows
    B[d:] @ A[r:], key rows nothing; scale alpha/r = 1/r."""
    from models.sr.archs.ram_arch import LoRALinear

    m = LoRALinear(6, 18, rank=2, groups=(True, False, True))
    assert m.lora_A.shape == (4, 6) and m.lora_B.shape == (12, 2)
    with torch.no_grad():
        m.lora_A.normal_()
        m.lora_B.normal_()
    A, B = m.lora_A.detach(), m.lora_B.detach()
    want = torch.cat([B[:6] @ A[:2], torch.zeros(6, 6), B[6:] @ A[2:]]) / 2
    torch.testing.assert_close(m.delta(), want)
    x = torch.randn(3, 6)
    before = m(x)
    m.merge()
    torch.testing.assert_close(m(x), before, rtol=1e-5, atol=1e-5)


# -- loading ---------------------------------------------------------------------------------------
def test_ram_checkpoint_in_official_layout_loads_strictly(files, images):
    t = tagger(files, dape=False)
    for k, v in files["net"].state_dict().items():
        torch.testing.assert_close(t.net.state_dict()[k], v, msg=k)
    emb = t.image_embeds(images)
    assert emb.shape == (2, 5, 16) and emb.dtype == torch.float32  # Swin-L: 2 x 145 x 512
    tags, emb2 = t.tags_and_embeds(images)
    assert torch.equal(emb, emb2) and len(tags) == 2 and all(set(ts) <= set(TAGS) for ts in tags)
    assert t.info["ram"]["path"] == str(files["ram_weights"]) and "dape" not in t.info


def test_tagging_head_from_its_tied_twin_and_old_names(files, images):
    """The official loader renames ``vision_multi.*``; a tagging-head tensor missing from the file is
    its tied ``tag_encoder`` twin's value."""
    sd = torch.load(files["ram_weights"])["model"]
    want = tagger(files, dape=False).image_embeds(images), tagger(files, dape=False).tags(images)
    sd = {("vision_multi" + k[len("tagging_head"):] if k.startswith("tagging_head.encoder.layer.0.") else k): v
          for k, v in sd.items() if not k.startswith("tagging_head.encoder.layer.1.")}
    torch.save({"model": sd}, files["ram_weights"])
    t = tagger(files, dape=False)
    torch.testing.assert_close(t.image_embeds(images), want[0])
    assert t.tags(images) == want[1]


def test_a_wrong_key_is_named(files):
    from models.sr.checkpoint import CheckpointError

    sd = torch.load(files["ram_weights"])["model"]
    blk = "visual_encoder.layers.1.blocks.0.attn."
    sd[blk + "projection.weight"] = sd.pop(blk + "proj.weight")
    torch.save({"model": sd}, files["ram_weights"])
    with pytest.raises(CheckpointError) as e:
        tagger(files, dape=False)
    assert "missing (e.g. visual_encoder.layers.1.blocks.0.attn.proj.weight)" in str(e.value)
    assert "unexpected (e.g. visual_encoder.layers.1.blocks.0.attn.projection.weight)" in str(e.value)
    lora = official_dape_state(files["lora"])
    lora["visual_encoder.layers.0.blocks.0.mlp.fc1.lora_A"] = torch.zeros(8, 8)
    torch.save(lora, files["dape_weights"])
    torch.save({"model": official_ram_state(files["net"])}, files["ram_weights"])
    with pytest.raises(CheckpointError, match=r"DAPE\.pth.*unexpected \(e\.g\. visual_encoder\.layers\.0\.blocks\.0"
                                              r"\.mlp\.fc1\.lora_A\)"):
        tagger(files)
    (files["dir"] / "ram_tag_list.txt").write_text("\n".join(TAGS[:9]))
    with pytest.raises(ValueError, match="10 thresholds for 9 tags"):
        tagger(files, dape=False)


def test_dape_lora_is_loaded_merged_and_changes_the_output(files, images):
    plain, dape = tagger(files, dape=False), tagger(files)
    lora = official_dape_state(files["lora"])
    base = files["net"].state_dict()
    qkv = "visual_encoder.layers.2.blocks.1.attn.qkv"
    A, B, d = lora[qkv + ".lora_A"], lora[qkv + ".lora_B"], base[qkv + ".weight"].shape[1]
    want = base[qkv + ".weight"] + torch.cat([B[:d] @ A[:8], torch.zeros(d, d), B[d:] @ A[8:]]) / 8
    torch.testing.assert_close(dape.net.state_dict()[qkv + ".weight"], want)
    # the tagging head's query is tied to tag_encoder's: the official .eval() merges both LoRA updates into it
    q = "tagging_head.encoder.layer.0.crossattention.self.query"
    te = "tag_encoder" + q[len("tagging_head"):]
    both = lora[q + ".lora_B"] @ lora[q + ".lora_A"] + lora[te + ".lora_B"] @ lora[te + ".lora_A"]
    want = base[q + ".weight"] + both / 8
    torch.testing.assert_close(dape.net.state_dict()[q + ".weight"], want)
    assert dape.info["dape"]["tied_updates"] == [q]  # layer 1's key twin has B = 0
    e0, e1 = plain.image_embeds(images), dape.image_embeds(images)
    assert e0.shape == e1.shape and (e0 - e1).abs().max() > 1e-2


# -- tags and prompts ------------------------------------------------------------------------------
def crafted(files, p: float):
    """The tiny RAM with a head that gives every tag the probability ``p``: the thresholds decide."""
    net = files["net"]
    with torch.no_grad():
        net.fc.weight.zero_()
        net.fc.bias.fill_(torch.logit(torch.tensor(p)).item())
    torch.save({"model": official_ram_state(net)}, files["ram_weights"])


def test_tags_are_decided_by_the_per_class_thresholds(files, images):
    crafted(files, 0.7)
    t = tagger(files, dape=False)
    want = [tag for tag, thr in zip(TAGS, THRESHOLDS) if 0.7 > thr]
    assert want == ["sign", "shop", "person", "zoo"]  # 0.69 fires, 0.71 does not
    assert t.tag_lists(images) == [want, want]
    assert t.tags(images) == ["sign, shop, person, zoo"] * 2
    crafted(files, 0.3)
    assert tagger(files, dape=False).tags(images) == ["", ""]


def test_osediff_prompt_format(files, images):
    from models.sr.archs.ram_arch import tiny_config
    from models.sr.diffusion.prompts import make_prompt_source
    from models.sr.registry import create_sr

    crafted(files, 0.7)
    kw = {k: files[k] for k in ("ram_weights", "dape_weights", "tag_list", "tag_thresholds")}
    src = make_prompt_source("dape", suffix="clean", config=tiny_config(), **kw)
    assert src.kind == "dape" and src(images) == ["sign, shop, person, zoo, clean,"] * 2
    assert src.describe() == "dape tags + 'clean'"
    assert make_prompt_source("ram", config=tiny_config(), **kw)(images[:1]) == ["sign, shop, person, zoo, ,"]
    m = create_sr("osediff-tiny", device="cpu", prompt=src)
    y = m.upscale(images[:1, :, :12, :12])
    assert y.shape == (1, 3, 48, 48) and 0 <= y.min() and y.max() <= 1


def test_seesr_gets_tags_and_the_image_embedding(files, images):
    from models.sr.archs.ram_arch import tiny_config
    from models.sr.registry import create_sr
    from models.sr.seesr import make_tagger

    crafted(files, 0.7)
    kw = {k: files[k] for k in ("ram_weights", "dape_weights", "tag_list", "tag_thresholds")}
    t = make_tagger(config=tiny_config(), **kw)
    tags, emb = t.tags_and_embeds(images)
    assert tags == [["sign", "shop", "person", "zoo"]] * 2 and emb.shape == (2, 5, 16)
    torch.testing.assert_close(emb, t.image_embeds(images))
    m = create_sr("seesr-tiny", device="cpu", steps=2)  # tiny SeeSR's image attention is 16 wide too
    m.tagger = t
    y = m.upscale(images[:1, :, :16, :16])
    assert y.shape == (1, 3, 64, 64) and m.last_prompts == ["sign, shop, person, zoo, ,clean, high-resolution, 8k"]


# -- missing files ---------------------------------------------------------------------------------
@pytest.fixture
def no_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("TEXTSR_WEIGHTS", str(tmp_path / "weights"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.delenv("TEXTSR_ALLOW_DOWNLOAD", raising=False)


def test_missing_files_name_the_file_and_its_source(files, no_weights):
    from models.sr.diffusion.ram import RAMTagger
    from models.weights import WeightsMissingError

    with pytest.raises(WeightsMissingError, match=r"(?s)'ram_swin_large_14m.pth' not found.*TEXTSR_WEIGHTS.*"
                                                  r"huggingface-cli download xinyu1205/recognize_anything_model"):
        RAMTagger()
    with pytest.raises(WeightsMissingError, match=r"(?s)'DAPE.pth' not found.*drive\.google\.com"):
        RAMTagger(ram_weights=files["ram_weights"])
    with pytest.raises(WeightsMissingError) as e:
        RAMTagger(ram_weights=files["ram_weights"], dape_weights=files["dape_weights"])
    msg = str(e.value)
    assert "'ram_tag_list.txt' not found" in msg and "sha256: 5d96d2f7" in msg
    assert ("curl -L -o " in msg and "https://raw.githubusercontent.com/xinyu1205/recognize-anything/"
            "7cb804a8609e9f4b1a50b7f31436d2df40bb9481/ram/data/ram_tag_list.txt" in msg)
    with pytest.raises(WeightsMissingError, match=r"(?s)'ram_tag_list_threshold.txt' not found.*/ram/data/"):
        RAMTagger(ram_weights=files["ram_weights"], dape=False, tag_list=files["dir"])
