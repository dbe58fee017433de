"""``textsr-train glyph-sr`` on one real tiny glyph corpus (``synth build --recipe glyph``) and the
tiny random GLYPH-SR: the subset stream hands the model the corpus members it names (upsampled
with torch's bicubic as the independent reference), only the Text-ControlNet moves, the loss on a
fixed evaluation batch goes down, a resumed run equals an uninterrupted one bit for bit, the
checkpoint loads through the SR registry and changes the output, and bad input is one line."""
import io
import json
import shutil
import tarfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
import webdataset as wds

from pipelines.train.cli import main

SUBSETS = {"text_clean/image_clean": "hr.png", "text_clean/image_degraded": "lr.png",
           "text_distorted/image_clean": "hr_tdist.png", "text_distorted/image_degraded": "lr_tdist.png"}
FAST = ["--set", "hr_crop=64", "--set", "eval_samples=2", "--set", "device=cpu", "--set", "lr_warmup_steps=0"]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """No BLIP weights (the caption is the metadata fallback), nothing downloads, no user cache."""
    with pytest.MonkeyPatch.context() as mp:
        root = tmp_path_factory.mktemp("weights")
        mp.setenv("TEXTSR_WEIGHTS", str(root / "textsr"))
        mp.setenv("HF_HOME", str(root / "hf"))
        mp.delenv("HF_HUB_CACHE", raising=False)
        mp.delenv("TEXTSR_ALLOW_DOWNLOAD", raising=False)
        yield root


@pytest.fixture(scope="module")
def corpus(env, tmp_path_factory):
    from models.datasets import load_catalog
    from pipelines.build import build
    from pipelines.executors import LocalExecutor
    from synth.recipe import load_recipe

    out = tmp_path_factory.mktemp("glyph") / "c"
    recipe = load_recipe("glyph", ["backgrounds.hr_size=256", "text.instances=[2, 3]", "samples_per_shard=2",
                                   "text.rendered.font_size_px=[28, 56]",
                                   # light degradation: LR text stays legible to OCR, so prompts are not empty
                                   "degrade.preset=matlab-bicubic"])
    build(recipe, out, 4, executor=LocalExecutor(recipe, catalog=load_catalog()), progress=False)
    return out


def _raw(corpus):
    urls = sorted(str(p) for p in (Path(corpus) / "shards").glob("*.tar"))
    return {s["__key__"]: s for s in wds.WebDataset(urls, shardshuffle=False)}


def _rgb(data) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1].astype(np.float32) / 255


def _reference_cond(sample, member) -> np.ndarray:
    """The member at HR size, 3×H×W: torch's bicubic (a=-0.75, half-pixel centres) for LR members."""
    img = torch.from_numpy(_rgb(sample[member]).copy()).permute(2, 0, 1)[None]
    H, W = _rgb(sample["hr.png"]).shape[:2]
    if img.shape[-2:] != (H, W):
        img = F.interpolate(img, size=(H, W), mode="bicubic", align_corners=False)
    return img[0].clamp(0, 1).numpy()


# -- the data stream (no model) -----------------------------------------------------------------
def test_each_subset_hands_the_member_it_names(corpus):
    from pipelines.train.glyph_data import GlyphStream

    raw = _raw(corpus)
    for subset, member in SUBSETS.items():
        # the whole 256² image: the control image must be the member itself (upsampled when LR)
        it = GlyphStream(corpus, hr_crop=256, seed=1, subset_weights={subset: 1}).samples()
        for _ in range(4):
            s = next(it)
            assert s.subset == subset
            ref = raw[s.key]
            assert s.cond.shape == s.hr.shape == (3, 256, 256) and s.cond.dtype == np.float32
            # cv2 INTER_CUBIC vs torch bicubic: the same kernel, float32 rounding apart
            np.testing.assert_allclose(s.cond, _reference_cond(ref, member), rtol=0, atol=2e-6)
            np.testing.assert_allclose(s.hr, _rgb(ref["hr.png"]).transpose(2, 0, 1), rtol=0, atol=1e-7)
            assert s.prompt == json.loads(ref["json"])["glyph"]["guidance"]["prompt"]
        # a 64² crop: HR and control image cut at the same place, the offset a multiple of the scale (4)
        it = GlyphStream(corpus, hr_crop=64, seed=2, subset_weights={subset: 1}).samples()
        for _ in range(4):
            s = next(it)
            hr = _rgb(raw[s.key]["hr.png"]).transpose(2, 0, 1)
            hits = [(y, x) for y in range(0, 193, 4) for x in range(0, 193, 4)
                    if np.abs(hr[:, y:y + 64, x:x + 64] - s.hr).max() < 2e-7]
            assert hits, f"{subset}: the HR crop is not an aligned crop of hr.png"
            y, x = hits[0]
            np.testing.assert_allclose(s.cond, _reference_cond(raw[s.key], member)[:, y:y + 64, x:x + 64],
                                       rtol=0, atol=2e-6)


def test_subset_choice_is_seeded_weighted_and_recorded(corpus):
    from pipelines.train.glyph_data import GlyphStream, collate

    def draws(seed, weights=None, n=40):
        it = GlyphStream(corpus, hr_crop=64, seed=seed, subset_weights=weights).samples()
        return [(s.key, s.subset) for s in (next(it) for _ in range(n))]

    a = draws(3)
    assert a == draws(3)  # a function of the seed
    assert {s for _, s in a} == set(SUBSETS)  # equal weights by default: all four in 10 epochs
    only = draws(3, {"text_clean/image_degraded": 2, "text_distorted/image_degraded": 1, "text_clean/image_clean": 0})
    assert {s for _, s in only} == {"text_clean/image_degraded", "text_distorted/image_degraded"}
    it = GlyphStream(corpus, hr_crop=64, seed=3).samples()
    b = collate([next(it) for _ in range(3)])
    assert b["subsets"] == [s for _, s in a[:3]] and len(b["prompts"]) == 3
    assert b["cond"].shape == b["hr"].shape == (3, 3, 64, 64) and b["cond"].dtype == torch.float32


def test_missing_member_is_skipped_and_a_non_glyph_corpus_is_one_line(corpus, tmp_path):
    from pipelines.train.glyph_data import GlyphStream
    from synth.shards import CorpusError

    c = tmp_path / "c"
    shutil.copytree(corpus, c)
    shard = min((c / "shards").glob("*.tar"))
    with tarfile.open(shard) as t:
        members = [(m, t.extractfile(m).read()) for m in t.getmembers()]
    dropped = members[0][0].name.split(".")[0]
    with tarfile.open(shard, "w") as t:
        for m, data in members:
            if m.name != dropped + ".lr_tdist.png":
                t.addfile(m, io.BytesIO(data))
    st = GlyphStream(c, hr_crop=64, seed=0)
    it = st.samples()
    got = {next(it).key for _ in range(3)}
    assert st.stats == {"missing-lr_tdist": 1} and dropped not in got and len(got) == 3
    # without the subset that needs it, the sample is usable
    st = GlyphStream(c, hr_crop=64, seed=0, subset_weights={"text_clean/image_degraded": 1})
    it = st.samples()
    assert dropped in {next(it).key for _ in range(4)} and not st.stats

    m = json.loads((c / "manifest.json").read_text())
    del m["recipe"]["glyph"]
    (c / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(CorpusError) as e:
        GlyphStream(c, hr_crop=64)
    msg = str(e.value)
    assert str(c) in msg and "--recipe glyph" in msg and "\n" not in msg


# -- training (the tiny model) ------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny(env, tmp_path_factory):
    glyphsr = pytest.importorskip("models.sr.glyphsr", reason="the GLYPH-SR model is not there yet")
    d = tmp_path_factory.mktemp("tiny")
    glyphsr.write_tiny_base(d / "base", seed=0)
    glyphsr.write_tiny_sr_controlnet(d / "sr_controlnet", seed=0)
    return ["--set", f"base={d / 'base'}", "--set", f"sr_controlnet={d / 'sr_controlnet'}"], d


def _argv(corpus, out, steps, tiny, *sets, resume=None):
    argv = ["glyph-sr", "--model", "glyph-sr-tiny", "--data", str(corpus), "--out", str(out),
            "--max-steps", str(steps), *FAST, *tiny[0]]
    for s in sets:
        argv += ["--set", s]
    return argv + (["--resume", resume] if resume else [])


def _train(*a, **kw):
    with pytest.raises(SystemExit) as e:
        main(_argv(*a, **kw))
    assert e.value.code == 0
    return json.loads((Path(a[1]) / "summary.json").read_text())


def _state(module) -> dict:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_only_the_text_controlnet_learns_and_the_checkpoint_loads(corpus, tiny, tmp_path):
    from models.sr.registry import create_sr
    from pipelines.train.glyphsr import TrainConfig, Trainer, apply_sets

    out = tmp_path / "run"
    sets = ["lr=1e-3", "batch_size=2", "checkpointing_steps=4", "hr_crop=64", "eval_samples=2", "device=cpu",
            "lr_warmup_steps=0", f"base={tiny[1] / 'base'}", f"sr_controlnet={tiny[1] / 'sr_controlnet'}"]
    cfg = apply_sets(TrainConfig(model="glyph-sr-tiny", data=str(corpus), out=str(out), max_steps=8), sets)
    tr = Trainer(cfg)
    frozen = {name: _state(m) for name, m in tr.model.frozen_modules().items()}
    assert set(frozen) == {"unet", "vae", "sr_controlnet", "text_encoder", "text_encoder_2"}
    before = [p.detach().clone() for p in tr.params]
    assert {id(p) for p in tr.params} == {id(p) for p in tr.model.text_controlnet.parameters()}
    s = tr.run()

    for name, m in tr.model.frozen_modules().items():
        after = _state(m)
        assert after.keys() == frozen[name].keys()
        for k, v in after.items():
            assert torch.equal(v, frozen[name][k]), (name, k)  # bit-identical: frozen
    assert sum(not torch.equal(a, p.detach()) for a, p in zip(before, tr.params)) > 0

    ev = [json.loads(x) for x in (out / "eval_log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in ev] == [0, 4, 8]
    assert ev[-1]["loss"] < ev[0]["loss"], ev  # the same batch, timesteps and noise each time
    log = [json.loads(x) for x in (out / "loss_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, 9)) and all(r["lr"] == 1e-3 for r in log)
    assert all(len(r["subsets"]) == 2 and set(r["subsets"]) <= set(SUBSETS) for r in log)
    assert all(len(r["prompt_dropped"]) == 2 for r in log)
    assert (out / "loss.png").stat().st_size > 1000

    ck = out / "checkpoint-8"
    assert s["checkpoint"] == str(ck)
    assert {p.relative_to(ck).as_posix() for p in ck.rglob("*") if p.is_file()} == {
        "text_controlnet/config.json", "text_controlnet/diffusion_pytorch_model.safetensors", "glyph_sr.json",
        "config.json", "rng_rank0.pt", "trainer_state.pt"}

    # what `evalkit score --model glyph-sr-tiny --model-opt weights=<ck>` builds
    kw = {"base": str(tiny[1] / "base"), "sr_controlnet": str(tiny[1] / "sr_controlnet"), "device": "cpu"}
    trained = create_sr("glyph-sr-tiny", weights=str(ck), **kw)
    for k, v in trained.text_controlnet.state_dict().items():
        assert torch.equal(v, tr.model.text_controlnet.state_dict()[k]), k
    lr = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    a = trained.upscale(lr)
    torch.manual_seed(0)
    b = create_sr("glyph-sr-tiny", **kw).upscale(lr)
    assert a.shape == b.shape == (1, 3, 16 * trained.scale, 16 * trained.scale)
    assert (a - b).abs().max() > 1e-4


def test_resume_reaches_the_same_parameters(corpus, tiny, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    sets = ("checkpointing_steps=2", "lr=1e-3", "seed=3", "prompt_dropout=0.5")
    sa = _train(corpus, a, 4, tiny, *sets)
    _train(corpus, b, 2, tiny, *sets)
    sb = _train(corpus, b, 4, tiny, *sets)  # --resume auto
    assert sb["start_step"] == 2
    assert sa["params_sha256"] == sb["params_sha256"]  # tolerance 0: same ops, same order, same RNG
    la, lb = ([json.loads(x) for x in (d / "loss_log.jsonl").read_text().splitlines()] for d in (a, b))
    assert [(r["loss"], r["subsets"], r["prompt_dropped"]) for r in la] == \
        [(r["loss"], r["subsets"], r["prompt_dropped"]) for r in lb]
    # a checkpoint of another configuration is not silently continued
    with pytest.raises(SystemExit) as e:
        main(_argv(corpus, b, 6, tiny, *sets[:-1], "prompt_dropout=0.2"))
    assert e.value.code == 2


def test_bad_input_is_one_line(corpus, tmp_path, capsys):
    def err(*extra, model="glyph-sr-tiny", data=corpus):
        with pytest.raises(SystemExit) as e:
            main(["glyph-sr", "--model", model, "--data", str(data), "--out", str(tmp_path / "o"),
                  "--max-steps", "1", *FAST, *extra])
        assert e.value.code == 2
        msg = capsys.readouterr().err.strip().splitlines()[-1]
        assert msg.startswith("textsr-train: error:")
        return msg

    assert "not a GLYPH-SR model" in err(model="tadisr-kolors-tiny")
    assert "unknown subset" in err("--set", "subset_weights={text_clean: 1}")
    assert "every subset has weight 0" in err("--set", "subset_weights={text_clean/image_clean: 0}")
    assert "multiple of 8" in err("--set", "hr_crop=60")
    assert "did you mean prompt_dropout" in err("--set", "prompt_dropot=0.2")
    ftsr = tmp_path / "ftsr"
    shutil.copytree(corpus, ftsr)
    m = json.loads((ftsr / "manifest.json").read_text())
    del m["recipe"]["glyph"]
    (ftsr / "manifest.json").write_text(json.dumps(m))
    assert "--recipe glyph" in err(data=ftsr)


def test_evalkit_scores_the_trained_checkpoint_on_the_glyph_corpus_with_recorded_prompts(corpus, tiny, tmp_path):
    """The loop closed: `textsr-train glyph-sr` -> checkpoint -> `evalkit score --model glyph-sr-tiny
    --bench <the glyph corpus> --model-opt weights=<checkpoint>`; every image records the prompts it
    was given (real PP-OCR on the upsampled LR, verbalised) and the run names the weights."""
    from models.ocr import create_ocr
    from models.ocr.verbalise import read_prompt
    from pipelines.cli import evalkit_main

    run = tmp_path / "train"
    _train(corpus, run, 1, tiny)
    out = tmp_path / "score"
    opts = ["--model-opt", f"weights={run / 'checkpoint-1'}", "--model-opt", f"base={tiny[1] / 'base'}",
            "--model-opt", f"sr_controlnet={tiny[1] / 'sr_controlnet'}", "--model-opt", "steps=2"]
    rc = evalkit_main(["score", "--model", "glyph-sr-tiny", "--bench", str(corpus), "--out", str(out),
                       "--metrics", "psnr,ocr_a", "--device", "cpu", "--no-progress", "--limit", "2", *opts])
    assert rc == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["model"] == "glyph-sr-tiny" and s["images"] == 2 and s["skipped"] == 0
    assert str(run / "checkpoint-1") in json.dumps(s)  # the run names the trained weights it scored
    rows = [json.loads(x) for x in (out / "per_image.jsonl").read_text().splitlines()]
    ocr = create_ocr("rapidocr-ppocrv4")
    for r in rows:
        c = r["conditioning"]
        assert c["scene_prompt"] == c["caption"] == "A photograph."
        assert c["text_prompt"] == " ".join(t for t in (c["caption"], c["ocr_prompt"]) if t)
        assert c["guidance"] == ("ocr+caption" if c["ocr_prompt"] else "caption-only (OCR read nothing)")
        # the recorded prompt is what PP-OCR reads in the ×4 bicubic LR the model saw (torch bicubic)
        lr = torch.from_numpy(_rgb(_raw(corpus)[r["key"]]["lr.png"])).permute(2, 0, 1)[None]
        up = torch.nn.functional.interpolate(lr, scale_factor=4, mode="bicubic", align_corners=False).clamp(0, 1)
        img = (up[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        assert c["ocr_prompt"] == read_prompt(ocr, np.ascontiguousarray(img), 0.5)["prompt"]
    assert any(r["conditioning"]["ocr"] for r in rows)  # text was read in at least one LR


def test_two_gloo_processes_stay_in_sync(corpus, tiny, tmp_path):
    """Data-parallel as the TADiSR trainer: two ranks read different samples, DDP averages the
    Text-ControlNet's gradients, so both replicas end bit-identical (they would differ unsynced)."""
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "ddp"
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    cmd = [str(Path(sys.executable).with_name("torchrun")), "--standalone", "--nproc_per_node", "2", "-m",
           "pipelines.train.cli", *_argv(corpus, out, 2, tiny, "eval_samples=1", "lr=1e-3", "batch_size=1")]
    r = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    r0, r1 = (json.loads((out / "ranks" / f"rank{i}.json").read_text()) for i in (0, 1))
    assert r0["world_size"] == r1["world_size"] == 2
    assert r0["params_sha256"] == r1["params_sha256"]
    ck = out / "checkpoint-2"
    assert {p.name for p in ck.iterdir()} == {"text_controlnet", "glyph_sr.json", "config.json", "rng_rank0.pt",
                                             "rng_rank1.pt", "trainer_state.pt"}
    assert len((out / "loss_log.jsonl").read_text().splitlines()) == 2  # rank 0 logs once per step
