"""Hi-SAM / SAM-TSS segmenters: strict loading of checkpoints in the official key layout, the
procedure's shapes and batching, and the missing-file errors. Tiny variants only (CPU, ~1 s each).

The key layout below is written from the official modules (github.com/ymy-k/Hi-SAM,
hi_sam/modeling/*.py: ``HiSam`` with ``image_encoder`` = ``ImageEncoderViT`` whose ``Block`` has
``Space_Adapter`` / ``MLP_Adapter``, ``modal_aligner`` = ``ModalAligner``, ``prompt_encoder`` =
``PromptEncoder``, ``mask_decoder`` = ``MaskDecoder`` with the ``*_hr`` head, ``hi_decoder`` =
``HiDecoder``), with shapes from their constructors at our tiny sizes, not from our network.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from models.seg import create_segmenter, list_segmenters
from models.sr.checkpoint import CheckpointError
from models.weights import WeightsMissingError

# tiny sizes (models.seg.archs.hisam_arch.TINY): ViT width E, depth 2 (block 1 global), 2 heads,
# 128² input / 16 -> 8² grid, window 5; decoder width C, MLP 128, IoU head 64, mask_in_chans 8
E, DEPTH, HEADS, GLOBAL, GRID, WIN, C, MLP_DIM, IOU, MIC, L = 32, 2, 2, (1,), 8, 5, 64, 128, 64, 8, 12


def _linear(name, n_out, n_in):
    return {f"{name}.weight": (n_out, n_in), f"{name}.bias": (n_out,)}


def _ln(name, n):
    return {f"{name}.weight": (n,), f"{name}.bias": (n,)}


def _mlp(name, dims):
    out = {}
    for i, (a, b) in enumerate(itertools.pairwise(dims)):
        out |= _linear(f"{name}.layers.{i}", b, a)
    return out


def _attn(name, inner):  # transformer.py Attention: q/k/v/out projections
    return (_linear(f"{name}.q_proj", inner, C) | _linear(f"{name}.k_proj", inner, C)
            | _linear(f"{name}.v_proj", inner, C) | _linear(f"{name}.out_proj", C, inner))


def _sam_decoder(p):
    """The part of MaskDecoder / HiDecoder that is SAM's own mask decoder."""
    k = {}
    for i in range(2):
        b = f"{p}.transformer.layers.{i}"
        k |= _attn(f"{b}.self_attn", C) | _ln(f"{b}.norm1", C) | _attn(f"{b}.cross_attn_token_to_image", C // 2)
        k |= _ln(f"{b}.norm2", C) | _linear(f"{b}.mlp.lin1", MLP_DIM, C) | _linear(f"{b}.mlp.lin2", C, MLP_DIM)
        k |= _ln(f"{b}.norm3", C) | _ln(f"{b}.norm4", C) | _attn(f"{b}.cross_attn_image_to_token", C // 2)
    k |= _attn(f"{p}.transformer.final_attn_token_to_image", C // 2) | _ln(f"{p}.transformer.norm_final_attn", C)
    k |= {f"{p}.iou_token.weight": (1, C), f"{p}.mask_tokens.weight": (4, C)}
    k |= {f"{p}.output_upscaling.0.weight": (C, C // 4, 2, 2), f"{p}.output_upscaling.0.bias": (C // 4,)}
    k |= _ln(f"{p}.output_upscaling.1", C // 4)
    k |= {f"{p}.output_upscaling.3.weight": (C // 4, C // 8, 2, 2), f"{p}.output_upscaling.3.bias": (C // 8,)}
    for i in range(4):
        k |= _mlp(f"{p}.output_hypernetworks_mlps.{i}", [C, C, C, C // 8])
    return k | _mlp(f"{p}.iou_prediction_head", [C, IOU, IOU, 4])


def _convs(p, idx, norms):  # 3x3 convs C/16 -> C/16 at ``idx``, LayerNorm2d at ``norms``
    c = C // 16
    k = {}
    for i in idx:
        k |= {f"{p}.{i}.weight": (c, c, 3, 3), f"{p}.{i}.bias": (c,)}
    for i in norms:
        k |= _ln(f"{p}.{i}", c)
    return k


def official_layout(hier: bool) -> tuple[dict, dict]:
    """(keys of SAM's sam_vit_* file, keys of the released Hi-SAM / SAM-TSS file) -> shapes.
    The released files omit the frozen ViT weights but keep its adapters."""
    enc = {"image_encoder.patch_embed.proj.weight": (E, 3, 16, 16), "image_encoder.patch_embed.proj.bias": (E,),
           "image_encoder.pos_embed": (1, GRID, GRID, E)}
    adapters = {}
    for i in range(DEPTH):
        b = f"image_encoder.blocks.{i}"
        size = GRID if i in GLOBAL else WIN
        enc |= _ln(f"{b}.norm1", E) | _linear(f"{b}.attn.qkv", 3 * E, E) | _linear(f"{b}.attn.proj", E, E)
        enc |= {f"{b}.attn.rel_pos_h": (2 * size - 1, E // HEADS), f"{b}.attn.rel_pos_w": (2 * size - 1, E // HEADS)}
        enc |= _ln(f"{b}.norm2", E) | _linear(f"{b}.mlp.lin1", 4 * E, E) | _linear(f"{b}.mlp.lin2", E, 4 * E)
        for a in ("Space_Adapter", "MLP_Adapter"):
            adapters |= _linear(f"{b}.{a}.D_fc1", E // 4, E) | _linear(f"{b}.{a}.D_fc2", E, E // 4)
    enc |= {"image_encoder.neck.0.weight": (C, E, 1, 1), "image_encoder.neck.2.weight": (C, C, 3, 3)}
    enc |= _ln("image_encoder.neck.1", C) | _ln("image_encoder.neck.3", C)
    pe = {"prompt_encoder.pe_layer.positional_encoding_gaussian_matrix": (2, C // 2),
          "prompt_encoder.not_a_point_embed.weight": (1, C), "prompt_encoder.no_mask_embed.weight": (1, C)}
    pe |= {f"prompt_encoder.point_embeddings.{i}.weight": (1, C) for i in range(4)}
    md = "prompt_encoder.mask_downscaling"
    pe |= {f"{md}.0.weight": (MIC // 4, 1, 2, 2), f"{md}.0.bias": (MIC // 4,), f"{md}.3.weight": (MIC, MIC // 4, 2, 2),
           f"{md}.3.bias": (MIC,), f"{md}.6.weight": (C, MIC, 1, 1), f"{md}.6.bias": (C,)}
    pe |= _ln(f"{md}.1", MIC // 4) | _ln(f"{md}.4", MIC)
    sam = enc | pe | _sam_decoder("mask_decoder")

    ma = {f"modal_aligner.conv.{i}.weight": (L, C if i == 0 else L, 3, 3) for i in (0, 2, 4, 6)}
    t = "modal_aligner.transformer_layers.0"
    for a in ("self_attn", "cross_attn"):
        ma |= {f"{t}.{a}.in_proj_weight": (3 * C, C), f"{t}.{a}.in_proj_bias": (3 * C,)}
        ma |= _linear(f"{t}.{a}.out_proj", C, C)
    ma |= _ln(f"{t}.norm1", C) | _ln(f"{t}.norm2", C) | _linear(f"{t}.ffn.0", 4 * C, C) | _linear(f"{t}.ffn.2", C, 4 * C)
    hr = {"mask_decoder.output_upscaling_hr.0.weight": (C // 8, C // 16, 2, 2),
          "mask_decoder.output_upscaling_hr.0.bias": (C // 16,),
          "mask_decoder.output_upscaling_hr.3.weight": (C // 16, C // 16, 2, 2),
          "mask_decoder.output_upscaling_hr.3.bias": (C // 16,)}
    hr |= _convs("mask_decoder.output_upscaling_hr", (6, 9, 12, 15), (1, 4, 7, 10, 13))
    hr |= _mlp("mask_decoder.output_hypernetworks_mlps_hr", [C, C, C, C // 16])
    hr |= _mlp("mask_decoder.iou_prediction_head_hr", [C, IOU, IOU, 1])
    released = adapters | ma | pe | _sam_decoder("mask_decoder") | hr
    if hier:
        h = "hi_decoder"
        released |= _sam_decoder(h) | {f"{h}.word_mask_dc.0.weight": (C // 16, C // 8, 1, 1),
                                       f"{h}.word_mask_dc.0.bias": (C // 16,)}
        released |= _ln(f"{h}.word_mask_dc.1", C // 16) | _convs(f"{h}.word_mask_refine", (0, 3, 6, 9), (1, 4, 7))
        released |= _mlp(f"{h}.output_word_mlp", [C, C, C, C // 16])
    return sam, released


def _tensors(layout: dict, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(s, generator=g) * 0.2 for k, s in layout.items()}


def _write(tmp_path, hier, seed=0, drop=(), extra=None):
    sam_l, rel_l = official_layout(hier)
    sam, rel = _tensors(sam_l, seed), _tensors(rel_l, seed + 100)
    for k in drop:
        rel.pop(k)
    rel |= extra or {}
    enc, ckpt = tmp_path / f"sam_vit_tiny_{seed}.pth", tmp_path / f"released_{hier}_{seed}.pth"
    torch.save(sam, enc)
    # train.py saves {"model", "optimizer", "lr_scheduler", "epoch"}; the loader takes "model"
    torch.save({"model": rel, "epoch": 3}, ckpt)
    return ckpt, enc, sam, rel


NAMES = {False: "sam-ts-tiny", True: "hi-sam-tiny"}
RNG = np.random.default_rng(0)
IMAGES = [RNG.integers(0, 256, s + (3,), dtype=np.uint8) for s in ((37, 211), (301, 257), (16, 16))]


@pytest.mark.parametrize("hier", [False, True])
def test_official_layout_loads_strictly(tmp_path, hier):
    ckpt, enc, sam, rel = _write(tmp_path, hier)
    seg = create_segmenter(NAMES[hier], weights=ckpt, encoder_weights=enc)
    got = seg.net.state_dict()
    expect = {**sam, **rel}  # the released file wins where both have a key (its mask decoder)
    assert set(got) == set(expect)
    for k, v in expect.items():
        torch.testing.assert_close(got[k], v, rtol=0, atol=0, msg=k)
    assert seg.load_record["weights_tensors"] == len(rel)
    assert seg.load_record["encoder_tensors"] == len(set(sam) - set(rel))
    # the output follows the weights: seeded random, file 0 and file 1 all differ
    other = create_segmenter(NAMES[hier], weights=_write(tmp_path, hier, seed=1)[0], encoder_weights=_write(tmp_path, hier, seed=1)[1])
    logits = [s.stroke_logits(IMAGES[0]) for s in (create_segmenter(NAMES[hier]), seg, other)]
    assert all(np.abs(a - b).max() > 1e-3 for a, b in ((logits[0], logits[1]), (logits[1], logits[2])))


def test_strict_loading_names_file_and_keys(tmp_path):
    key = "mask_decoder.output_hypernetworks_mlps_hr.layers.2.bias"  # in the released file only
    ckpt, enc, *_ = _write(tmp_path, False, drop=(key,))
    with pytest.raises(CheckpointError, match=r"1 missing \(e\.g\. " + key.replace(".", r"\.")) as e:
        create_segmenter("sam-ts-tiny", weights=ckpt, encoder_weights=enc)
    assert str(ckpt) in str(e.value) and str(enc) in str(e.value)
    ckpt, enc, *_ = _write(tmp_path, False, extra={"mask_decoder.surplus.weight": torch.zeros(2)})
    with pytest.raises(CheckpointError, match="mask_decoder.surplus.weight") as e:
        create_segmenter("sam-ts-tiny", weights=ckpt, encoder_weights=enc)
    assert str(e.value).startswith(str(ckpt))
    # a SAM-TSS file given to Hi-SAM: the H-decoder is missing; a Hi-SAM file to SAM-TSS: surplus keys
    ckpt, enc, *_ = _write(tmp_path, False)
    with pytest.raises(CheckpointError, match=r"missing \(e\.g\. hi_decoder\."):
        create_segmenter("hi-sam-tiny", weights=ckpt, encoder_weights=enc)
    ckpt, enc, *_ = _write(tmp_path, True)
    with pytest.raises(CheckpointError, match="hi_decoder"):
        create_segmenter("sam-ts-tiny", weights=ckpt, encoder_weights=enc)


@pytest.mark.parametrize("name, file", [("sam-ts", "sam_vit_l_0b3195.pth"), ("hi-sam", "sam_vit_l_0b3195.pth")])
def test_missing_encoder_names_file_and_source(isolated_weights, tmp_path, name, file):
    ckpt, *_ = _write(tmp_path, name == "hi-sam")
    with pytest.raises(WeightsMissingError) as e:
        create_segmenter(name, weights=ckpt)
    msg = str(e.value)
    assert file in msg and f"https://dl.fbaipublicfiles.com/segment_anything/{file}" in msg
    assert str(isolated_weights) in msg
    with pytest.raises(WeightsMissingError, match="nowhere.pth"):
        create_segmenter("sam-ts-tiny", weights=ckpt, encoder_weights=tmp_path / "nowhere.pth")


@pytest.mark.parametrize("name", ["sam-ts-tiny", "hi-sam-tiny"])
def test_masks_and_batching(name):
    seg = create_segmenter(name, batch_size=2)  # no arguments needed: what synth's factory does
    # random weights give near-zero logits; a threshold at their median makes both classes appear
    seg.threshold = float(np.median(seg.stroke_logits(IMAGES[1])))
    batch = seg.segment_batch(IMAGES)
    for im, m in zip(IMAGES, batch):
        assert m.shape == im.shape[:2] and m.dtype == np.uint8 and set(np.unique(m)) <= {0, 255}
        # batched and one-by-one differ only by float rounding (different matmul blocking), so the
        # masks agree wherever the logit is not within that rounding of the threshold
        one = seg.stroke_logits(im)
        clear = np.abs(one - seg.threshold) > 5e-5
        np.testing.assert_array_equal(m[clear], seg.segment(im)[clear])
        assert clear.mean() > 0.99
    for a, b in zip(seg._stroke_logits(IMAGES), [seg.stroke_logits(im) for im in IMAGES]):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=5e-5)
    assert set(np.unique(batch[1])) == {0, 255}


def test_preprocessing_matches_torchvision_resize():
    """SAM's ResizeLongestSide resizes with torchvision's ``resize(to_pil_image(img), (h, w))``."""
    from torchvision.transforms.functional import resize, to_pil_image

    seg = create_segmenter("sam-ts-tiny")
    batch, sizes = seg._inputs([IMAGES[0]])
    assert sizes == [(22, 128)]  # 37 * 128 / 211 = 22.4 -> 22 (SAM rounds with int(x + 0.5))
    ref = np.array(resize(to_pil_image(IMAGES[0]), [22, 128])).astype(np.float32)
    ref = (ref - [123.675, 116.28, 103.53]) / [58.395, 57.12, 57.375]
    np.testing.assert_allclose(batch[0, :, :22, :128].permute(1, 2, 0).numpy(), ref, atol=1e-5)
    assert batch[0, :, 22:].abs().max() == 0 and batch.shape == (1, 3, 128, 128)


def test_sliding_windows_and_hierarchy():
    seg = create_segmenter("hi-sam-tiny", window=128, stride=96)
    big = IMAGES[1]
    whole = create_segmenter("hi-sam-tiny").stroke_logits(big)
    slid = seg.stroke_logits(big)
    assert slid.shape == big.shape[:2] and not np.allclose(slid, whole)
    # a window as large as the image is the plain path
    np.testing.assert_allclose(create_segmenter("hi-sam-tiny", window=301).stroke_logits(big), whole, atol=1e-6)
    r = seg.hierarchy(big, [[10, 20], [200, 150], [256, 300]])
    for k in ("word", "line", "paragraph"):
        assert r[k].shape == (3, 301, 257) and r[k].dtype == np.uint8 and set(np.unique(r[k])) <= {0, 255}
    assert r["line_score"].shape == r["paragraph_score"].shape == (3,)
    with pytest.raises(AttributeError):
        create_segmenter("sam-ts-tiny").hierarchy(big, [[1, 1]])


def test_registry_has_tiny_variants():
    assert {"sam-ts", "sam-ts-tiny", "hi-sam", "hi-sam-tiny"} <= set(list_segmenters())


def test_synth_build_with_sam_ts_tiny_records_the_segmenter(tmp_path):
    """`synth build --set segmenter=sam-ts-tiny`: real crops go through the SAM-TS procedure and the
    manifest names the segmenter the corpus was built with."""
    import json

    import webdataset as wds

    from pipelines.cli import synth_main

    out = tmp_path / "c"
    rc = synth_main(["build", "--recipe", "ftsr", "--num", "2", "--out", str(out), "--executor", "local",
                     "--no-progress", "--set", "segmenter=sam-ts-tiny", "--set", "text.rendered_prob=0",
                     "--set", "backgrounds.hr_size=256", "--set", "samples_per_shard=2"])
    assert rc == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["recipe"]["segmenter"] == "sam-ts-tiny"
    samples = list(wds.WebDataset(sorted(str(p) for p in (out / "shards").glob("*.tar")), shardshuffle=False))
    assert len(samples) == 2
    # every text was first tried as a real crop masked by sam-ts-tiny; its random-weight masks do not
    # read as the label, so the OCR filter rejects them ("glyphs-disagree") and the build falls back
    # to rendered text — the check that catches a segmenter that loses strokes
    rejected = manifest["counts"]["rejected"]
    assert rejected["ocr-filter"].get("glyphs-disagree", 0) > 0, rejected
