"""The batch jobs on a real two-node Ray cluster (tests/cluster.py: two `ray start --block` nodes on
loopback): `evalkit score --address` across both nodes equals the single-process run, and a
`synth build --address` whose worker node's raylet is killed mid-build still completes,
byte-identical to a local build, with no key lost or duplicated. The drivers are the real command
lines in their own processes; the code reaches the cluster through runtime_env py_modules."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import webdataset as wds

from helpers import text_corpus
from tests.cluster import LoopbackCluster

SYNTH = "from pipelines.cli import main_synth; main_synth()"
EVALKIT = "from pipelines.cli import main_evalkit; main_evalkit()"
NUM, PER_SHARD = 96, 3


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with LoopbackCluster(tmp_path_factory.mktemp("cluster")) as c:
        yield c


def _build_args(bg: Path, out, extra=()):
    return ["build", "--num", str(NUM), "--out", str(out), "--no-progress",
            "--set", f"backgrounds.sources=[{{path: '{bg}', format: image-folder}}]",
            "--set", "backgrounds.ocr_reject=false", "--set", "backgrounds.hr_size=256",
            "--set", "text.rendered_prob=1.0", "--set", f"samples_per_shard={PER_SHARD}", *extra]


@pytest.fixture(scope="module")
def backgrounds(tmp_path_factory):
    import cv2
    import skimage.data

    root = tmp_path_factory.mktemp("bg")
    for name in ("coffee", "chelsea", "rocket"):
        cv2.imwrite(str(root / f"{name}.png"), getattr(skimage.data, name)()[:, :, ::-1])
    return root


def test_score_across_two_nodes_equals_the_single_process_run(cluster, tmp_path, monkeypatch):
    monkeypatch.setenv("TEXTSR_CACHE", str(tmp_path / "cache"))
    corpus = text_corpus(tmp_path / "corpus", 6)
    common = ["score", "--model", "bicubic", "--bench", str(corpus), "--metrics", "psnr,ssim,ocr_a,ocr_f1",
              "--batch-size", "2", "--no-progress"]
    env = {**cluster.env, "TEXTSR_CACHE": str(tmp_path / "cache")}
    one = subprocess.run([sys.executable, "-c", EVALKIT, *common, "--out", str(tmp_path / "one")],
                         capture_output=True, text=True, timeout=600, env=env)
    assert one.returncode == 0, one.stderr
    two = subprocess.run([sys.executable, "-c", EVALKIT, *common, "--out", str(tmp_path / "two"),
                          "--address", cluster.address, "--workers", "2"],
                         capture_output=True, text=True, timeout=600, env=env)
    assert two.returncode == 0, two.stderr
    rows = [[{k: v for k, v in json.loads(ln).items() if not k.endswith("_path")}
             for ln in (tmp_path / run / "per_image.jsonl").read_text().splitlines()] for run in ("one", "two")]
    assert rows[0] == rows[1] and len(rows[0]) == 6
    s1, s2 = (json.loads((tmp_path / run / "summary.json").read_text()) for run in ("one", "two"))
    assert s1["metrics"] == s2["metrics"]
    assert s2["executor"]["nodes"] == 2 and s2["executor"]["workers"] == 2


def test_build_survives_losing_a_node_byte_identical(cluster, backgrounds, tmp_path):
    from models.datasets import load_catalog
    from pipelines.build import build
    from pipelines.executors import LocalExecutor
    from synth.recipe import load_recipe

    args = _build_args(backgrounds, tmp_path / "cluster", ["--address", cluster.address, "--workers", "2"])
    sets = [args[i + 1] for i, a in enumerate(args) if a == "--set"]
    recipe = load_recipe("ftsr", sets)
    local = build(recipe, tmp_path / "local", NUM, executor=LocalExecutor(recipe, catalog=load_catalog()),
                  progress=False)
    assert local["complete"]

    proc = subprocess.Popen([sys.executable, "-c", SYNTH, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=cluster.env)
    manifest = tmp_path / "cluster" / "manifest.json"
    worker_id = cluster.worker_node_id[:8]
    deadline = time.time() + 300
    landed = []
    while time.time() < deadline and proc.poll() is None:
        if manifest.exists():
            landed = json.loads(manifest.read_text())["shards"]
            # both nodes at work: a shard from the worker node has landed, more are in flight
            if any(s["node"].endswith(worker_id) for s in landed):
                break
        time.sleep(0.05)
    assert proc.poll() is None, "the build ended before a node could be killed:\n" + proc.stderr.read()
    cluster.kill_worker_raylet()
    out, err = proc.communicate(timeout=600)
    print(f"worker raylet killed after {len(landed)} of {NUM // PER_SHARD} shards")
    assert proc.returncode == 0, err
    assert 0 < len(landed) < NUM // PER_SHARD  # the kill came mid-build
    m = json.loads(manifest.read_text())
    assert m["complete"] and m["executor"]["nodes"] == 2
    assert [(s["file"], s["sha256"]) for s in m["shards"]] == [(s["file"], s["sha256"]) for s in local["shards"]]
    nodes = {s["node"].rsplit("/", 1)[1] for s in m["shards"]}
    assert worker_id in nodes and len(nodes) == 2  # shards were built on both nodes
    keys = [s["__key__"] for s in wds.WebDataset(sorted(str(p) for p in (tmp_path / "cluster" / "shards").glob("*.tar")),
                                                  shardshuffle=False)]
    assert keys == [f"ftsr-{i:09d}" for i in range(NUM)]  # none lost, none twice
    assert sorted(p.name for p in (tmp_path / "cluster" / "shards").iterdir()) == \
        [f"ftsr-{i:06d}.tar" for i in range(NUM // PER_SHARD)]  # no temp file of the killed attempts
    assert np.all([s["count"] == PER_SHARD for s in m["shards"]])
