"""``textsr-train tadisr`` on a real tiny synth corpus and the tiny random TADiSR bases: the loss on a
fixed evaluation batch goes down, checkpoints are in the official ``save_model`` layout (compared
with the keys the official code writes: diffusers ``add_adapter`` with the official target lists,
restated from github.com/mingcv/TADiSR@6f591a6 ``tadisr/pipelines.py``) and load strictly through
the SR registry, a resumed run equals an uninterrupted one bit for bit, two gloo processes stay in
sync, and bad input is a one-line error."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pipelines.train.cli import main
from tests.helpers import text_corpus

pytestmark = pytest.mark.usefixtures("isolated_weights")
ROOT = Path(__file__).resolve().parents[1]

# official facts (pipelines.py TADiSRPipeline.__init__ / save_model)
UNET_TARGETS = ["to_k", "to_q", "to_v", "to_out.0", "conv", "conv1", "conv2", "conv_shortcut", "conv_out",
                "proj_in", "proj_out", "ff.net.2", "ff.net.0.proj"]
VAE_TARGETS = ["conv1", "conv2", "conv_in", "conv_shortcut", "conv", "conv_out", "skip_conv_1", "skip_conv_2",
               "skip_conv_3", "skip_conv_4", "to_k", "to_q", "to_v", "to_out.0"]
KOLORS_KEYS = {"mi_decoder", "unet_lora_target_modules", "rank_unet", "state_dict_unet", "state_dict_vae"}
FAST = ["--set", "hr_crop=64", "--set", "eval_samples=2", "--set", "device=cpu"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return text_corpus(tmp_path_factory.mktemp("corpus") / "c", 8)


def _train(corpus, out, steps, *sets, resume=None):
    argv = ["tadisr", "--model", "tadisr-kolors-tiny", "--data", str(corpus), "--out", str(out),
            "--max-steps", str(steps), *FAST]
    for s in sets:
        argv += ["--set", s]
    if resume:
        argv += ["--resume", resume]
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 0
    return json.loads((Path(out) / "summary.json").read_text())


def _official_kolors_keys():
    """Key names and shapes the official save_model writes for the tiny Kolors base."""
    from peft import LoraConfig

    from models.sr import tadisr_bases as tb
    from models.sr.archs.tadisr_arch import decoder_for_vae

    b = tb.tiny_bases("kolors")
    vae, bo = b.vae, b.vae.config.block_out_channels
    for k, (ci, co) in enumerate(zip((bo[2], bo[1], bo[0], bo[0]), (bo[3], bo[3], bo[2], bo[1])), 1):
        setattr(vae.decoder, f"skip_conv_{k}", torch.nn.Conv2d(ci, co, 1, bias=False))
    vae.add_adapter(LoraConfig(r=2, init_lora_weights="gaussian", target_modules=VAE_TARGETS), adapter_name="vae_skip")
    b.backbone.add_adapter(LoraConfig(r=4, init_lora_weights="gaussian", target_modules=UNET_TARGETS))
    dec = decoder_for_vae("mugi", vae.config, groups=4)
    shapes = lambda d: {k: tuple(v.shape) for k, v in d.items()}
    return {"state_dict_unet": shapes({k: v for k, v in b.backbone.state_dict().items() if "lora" in k or "conv_in" in k}),
            "state_dict_vae": shapes({k: v for k, v in vae.state_dict().items() if "lora" in k or "skip" in k}),
            "mi_decoder": shapes(dec.state_dict())}


def test_training_lowers_the_loss_and_the_checkpoint_loads(corpus, tmp_path):
    from models.sr.registry import create_sr

    out = tmp_path / "run"
    # lr 1e-3 (official 5e-6) so that 20 CPU steps move the tiny model; Dice at weight 1 instead of the
    # official 10: on 64² crops most training crops hold no text, where the pixel-ratio Dice saturates
    # near 1 and its ×10 drowns the other terms' decrease in noise over so few steps
    s = _train(corpus, out, 20, "batch_size=2", "lr=1e-3", "lambda_dice=1", "checkpointing_steps=10")
    ev = [json.loads(x) for x in (out / "eval_log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in ev] == [0, 10, 20]
    assert ev[-1]["loss"] < 0.97 * ev[0]["loss"], ev  # the same fixed batch, eval mode, posterior mean
    assert ev[-1]["l2"] < ev[0]["l2"]
    log = [json.loads(x) for x in (out / "loss_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, 21))
    assert {"loss", "loss_l2", "loss_lpips", "loss_edge", "loss_mask_mse", "loss_mask_focal", "loss_mask_dice",
            "lr", "s_per_step"} <= set(log[0])
    assert all(r["lr"] == 1e-3 for r in log)  # the official "constant" scheduler
    assert (out / "loss.png").stat().st_size > 1000
    cfg = json.loads((out / "config.json").read_text())["config"]
    # no LPIPS weights in the isolated test env: recorded as 0 with the reason
    assert cfg["lambda_lpips"] == 0 and cfg["notes"]["lambda_lpips_requested"] == 5.0
    assert "weights-missing" in cfg["notes"]["lpips"]

    pkl = out / "checkpoint-20" / "model_20.pkl"
    assert s["checkpoint"] == str(pkl) and (out / "checkpoint-10" / "model_10.pkl").is_file()
    ck = torch.load(pkl, weights_only=True)
    assert set(ck) == KOLORS_KEYS and ck["rank_unet"] == 4 and ck["unet_lora_target_modules"] == UNET_TARGETS
    official = _official_kolors_keys()
    for key, shapes in official.items():
        assert {k: tuple(v.shape) for k, v in ck[key].items()} == shapes, key
    # training moved every trained group away from its init (LoRA B starts at 0, skip convs at 1e-5)
    assert any(v.abs().max() > 0 for k, v in ck["state_dict_unet"].items() if "lora_B" in k)
    assert ck["state_dict_vae"]["decoder.skip_conv_2.base_layer.weight"].ne(1e-5).any()

    # the real build/load path (what `evalkit score --model-opt weights=...` calls), strict
    m = create_sr("tadisr-kolors-tiny", weights=str(pkl), device="cpu")
    assert m.weights_info["path"] == str(pkl) and m.weights_info["decoder_key"] == "mi_decoder"
    sr = m.upscale(torch.rand(1, 3, 16, 16))
    assert sr.shape == (1, 3, 64, 64)


def test_resume_reaches_the_same_parameters(corpus, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    _train(corpus, a, 4, "checkpointing_steps=2", "lr=1e-3", "seed=3")
    _train(corpus, b, 2, "checkpointing_steps=2", "lr=1e-3", "seed=3")
    s = _train(corpus, b, 4, "checkpointing_steps=2", "lr=1e-3", "seed=3")  # --resume auto
    assert s["start_step"] == 2
    ka = torch.load(a / "checkpoint-4" / "model_4.pkl", weights_only=True)
    kb = torch.load(b / "checkpoint-4" / "model_4.pkl", weights_only=True)
    for key in ("state_dict_unet", "state_dict_vae", "mi_decoder"):
        for k, v in ka[key].items():
            assert torch.equal(v, kb[key][k]), (key, k)  # tolerance 0: same ops, same order, same RNG
    la = [json.loads(x)["loss"] for x in (a / "loss_log.jsonl").read_text().splitlines()]
    lb = [json.loads(x)["loss"] for x in (b / "loss_log.jsonl").read_text().splitlines()]
    assert la == lb
    # a checkpoint of another configuration is not silently continued
    with pytest.raises(SystemExit) as e:
        main(["tadisr", "--model", "tadisr-kolors-tiny", "--data", str(corpus), "--out", str(b), "--max-steps", "6",
              *FAST, "--set", "seed=4"])
    assert e.value.code == 2


def test_two_gloo_processes_stay_in_sync(corpus, tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "pipelines.train.cli", "tadisr",
           "--model", "tadisr-kolors-tiny", "--data", str(corpus), "--out", str(out), "--max-steps", "2",
           *FAST, "--set", "eval_samples=1", "--set", "lr=1e-3"]
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240, check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    r0, r1 = (json.loads((out / "ranks" / f"rank{i}.json").read_text()) for i in (0, 1))
    assert r0["world_size"] == r1["world_size"] == 2
    assert r0["params_sha256"] == r1["params_sha256"]  # DDP averaged the gradients: identical replicas
    ck = out / "checkpoint-2"
    assert sorted(p.name for p in ck.iterdir()) == ["config.json", "model_2.pkl", "rng_rank0.pt", "rng_rank1.pt",
                                                     "trainer_state.pt"]
    assert len(list(out.rglob("*.pkl"))) == 1
    assert len((out / "loss_log.jsonl").read_text().splitlines()) == 2  # rank 0 logs once per step
    assert r.stderr.count("textsr-train tadisr: 2 steps") == 1


def test_bad_input_is_one_line(corpus, tmp_path, capsys):
    def err(argv):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2
        msg = capsys.readouterr().err.strip().splitlines()[-1]
        assert msg.startswith("textsr-train: error:")
        return msg

    base = ["--data", str(corpus), "--out", str(tmp_path / "o"), "--max-steps", "1"]
    assert "did you mean tadisr" in err(["tadisrr", "--model", "tadisr-kolors-tiny", *base])
    assert "not a TADiSR model" in err(["tadisr", "--model", "osediff", *base])
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no manifest.json" in err(["tadisr", "--model", "tadisr-kolors-tiny", *base[:0], "--data", str(empty),
                                      "--out", str(tmp_path / "o"), "--max-steps", "1"])
    assert "did you mean lr" in err(["tadisr", "--model", "tadisr-kolors-tiny", *base, "--set", "lrr=1"])
    assert "expected int" in err(["tadisr", "--model", "tadisr-kolors-tiny", *base, "--set", "batch_size=two"])
    assert "multiple of 8" in err(["tadisr", "--model", "tadisr-kolors-tiny", *base, "--set", "hr_crop=60"])


def test_sample_without_mask_is_skipped_and_counted(corpus, tmp_path):
    import tarfile

    from pipelines.train.data import CorpusStream

    c = tmp_path / "c"
    shutil.copytree(corpus, c)
    shard = c / "shards" / "ftsr-000000.tar"
    with tarfile.open(shard) as t:
        members = [(m, t.extractfile(m).read()) for m in t.getmembers()]
    dropped = members[0][0].name.split(".")[0] + ".mask.png"
    with tarfile.open(shard, "w") as t:
        for m, data in members:
            if m.name != dropped:
                import io

                t.addfile(m, io.BytesIO(data))
    st = CorpusStream(c, hr_crop=64, seed=0)
    it = st.samples()
    got = [next(it) for _ in range(7)]  # one epoch: 8 samples, one without a mask
    assert st.stats == {"missing-mask": 1}
    assert len({g.key for g in got}) == 7 and dropped.split(".")[0] not in {g.key for g in got}
    g = got[0]
    assert g.lr.shape == (3, 16, 16) and g.hr.shape == (3, 64, 64) and g.mask.shape == (1, 64, 64)
    assert g.hr.dtype == np.float32 and 0 <= g.hr.min() and g.hr.max() <= 1


def test_two_ranks_split_the_stream(corpus):
    from pipelines.train.data import CorpusStream

    def keys(rank, world, n):
        it = CorpusStream(corpus, hr_crop=64, seed=5, rank=rank, world=world).samples()
        return [next(it).key for _ in range(n)]

    both = keys(0, 2, 4) + keys(1, 2, 4)
    assert sorted(both) == sorted(keys(0, 1, 8))  # an epoch split in two, disjoint, complete
    assert keys(0, 1, 8) == keys(0, 1, 8)  # deterministic


def test_losses_are_the_official_maths():
    from skimage.transform._geometric import _umeyama

    from pipelines.train.losses import (
        EdgeDetector,
        dice_loss,
        edge_loss,
        mask_losses,
        rectify,
        sigmoid_focal_loss,
        umeyama,
    )

    src = np.float32([[3, 4], [40, 6], [39, 20], [2, 18]])
    dst = np.float32([[0, 0], [37, 0], [37, 14], [0, 14]])
    # ours computes in float64; skimage keeps the official float32 points in float32 (~1e-7 apart)
    np.testing.assert_allclose(umeyama(src, dst), _umeyama(src.astype(float), dst.astype(float), True), atol=1e-12)
    np.testing.assert_allclose(umeyama(src, dst), _umeyama(src, dst, True), rtol=1e-6, atol=1e-6)
    g = torch.Generator().manual_seed(0)
    logits, target = torch.randn(2, 1, 8, 8, generator=g), (torch.rand(2, 1, 8, 8, generator=g) > 0.7).float()
    focal, dice = mask_losses(logits, target)  # the official return order: (focal, dice)
    assert torch.allclose(focal, sigmoid_focal_loss(logits.flatten(1), target.flatten(1)))
    assert torch.allclose(dice, dice_loss(logits.flatten(1), target.flatten(1)))
    p = logits.sigmoid().flatten(1)
    t = target.flatten(1)
    assert torch.allclose(dice, (1 - (2 * (p * t).sum(1) + 1) / (p.sum(1) + t.sum(1) + 1)).sum())
    # an axis-aligned box: the official normalisation (x -> 2x/W − 1) with align_corners=True samples
    # pixel (r, c) of the crop at (y0·(H−1)/H + r, x0·(W−1)/W + c) — exact on a linear ramp
    H, W, x0, y0 = 32, 48, 4, 6
    yy, xx = torch.meshgrid(torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32), indexing="ij")
    ramp = torch.stack([0.01 * xx + 0.02 * yy, 0.015 * xx, 0.03 * yy])
    box = np.float32([[x0, y0], [20, y0], [20, 16], [x0, 16]])
    r, c = torch.meshgrid(torch.arange(10.0), torch.arange(16.0), indexing="ij")
    ys, xs = y0 * (H - 1) / H + r, x0 * (W - 1) / W + c
    want = torch.stack([0.01 * xs + 0.02 * ys, 0.015 * xs, 0.03 * ys])
    torch.testing.assert_close(rectify(box, ramp), want, atol=1e-5, rtol=0)
    img = torch.rand(3, H, W, generator=g)
    det = EdgeDetector()
    assert det(img[:, 6:16, 4:20]).shape == (8, 14)
    assert edge_loss(det, img[None], img[None], [[box]]) == 0
    assert edge_loss(det, img[None], img[None] * 0.5, [[]]) == 0  # no boxes: 0
    assert edge_loss(det, img[None], img[None] * 0.5, [[box]]) > 0


def test_cogview4_trains_and_its_checkpoint_loads(corpus, tmp_path):
    from models.sr.registry import create_sr

    out = tmp_path / "cv"
    argv = ["tadisr", "--model", "tadisr-cogview4-tiny", "--data", str(corpus), "--out", str(out), "--max-steps", "2",
            *FAST, "--set", "eval_samples=1", "--set", "lr=1e-3"]
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 0
    pkl = out / "checkpoint-2" / "model_2.pkl"
    ck = torch.load(pkl, weights_only=True)
    # CogView4Pipeline.save_model
    assert set(ck) == {"js_decoder", "transformer_lora_target_modules", "rank_transformer", "state_dict_transformer",
                       "state_dict_vae"}
    assert ck["rank_transformer"] == 4 and all("lora" in k for k in ck["state_dict_transformer"])
    m = create_sr("tadisr-cogview4-tiny", weights=str(pkl), device="cpu")
    assert m.weights_info["decoder_key"] == "js_decoder"
    assert m.upscale(torch.rand(1, 3, 16, 16)).shape == (1, 3, 64, 64)
