import json

import numpy as np
import pytest
import webdataset as wds

from synth.imageio import encode_png
from models.files import Location, sha256_file
from synth.shards import AtomicShardWriter


def _members(i):
    rng = np.random.default_rng(i)
    img = rng.integers(0, 256, (16, 24, 3), dtype=np.uint8)
    return {"hr.png": encode_png(img), "json": json.dumps({"i": i}).encode()}, img


def test_shard_round_trips_through_plain_webdataset(tmp_path):
    path = tmp_path / "shards" / "x-000000.tar"
    imgs = {}
    with AtomicShardWriter(path) as w:
        for i in range(3):
            m, img = _members(i)
            imgs[f"x-{i:09d}"] = img
            w.write(f"x-{i:09d}", m)
        count, digest = w.close()
    assert count == 3 and digest == sha256_file(path)
    got = list(wds.WebDataset(str(path), shardshuffle=False).decode("rgb8"))
    assert [s["__key__"] for s in got] == sorted(imgs)
    for s in got:
        np.testing.assert_array_equal(s["hr.png"], imgs[s["__key__"]])
        assert s["json"]["i"] == int(s["__key__"][2:])


def test_same_samples_give_identical_bytes(tmp_path):
    digests = []
    for run in range(2):
        with AtomicShardWriter(tmp_path / f"r{run}.tar") as w:
            for i in range(2):
                w.write(f"k-{i}", _members(i)[0])
            digests.append(w.close()[1])
    assert digests[0] == digests[1]


def test_failure_leaves_no_shard_and_no_temp(tmp_path):
    path = tmp_path / "s.tar"
    with pytest.raises(RuntimeError):
        with AtomicShardWriter(path) as w:
            w.write("k-0", _members(0)[0])
            raise RuntimeError("worker died")
    assert not path.exists() and not list(tmp_path.glob("*.tmp"))


def test_keys_with_dots_are_refused(tmp_path):
    with AtomicShardWriter(tmp_path / "s.tar") as w:
        with pytest.raises(ValueError, match="dot"):
            w.write("a.b", {"json": b"{}"})
        w.abort()


@pytest.mark.parametrize("where", ["memory://textsr-test/corpus", "file://{tmp}/corpus"])
def test_shards_on_fsspec_urls_hash_while_writing(where, tmp_path):
    """The same samples through fsspec's memory and local filesystems: the same bytes as a plain
    local write, the digest computed while writing equals hashlib's over the bytes read back, and a
    failed write publishes nothing."""
    import hashlib

    loc = Location(where.format(tmp=tmp_path))
    with AtomicShardWriter("shards/x-000000.tar", location=loc) as w:
        for i in range(3):
            w.write(f"x-{i:09d}", _members(i)[0])
        count, digest = w.close()
    data = loc.read_bytes("shards/x-000000.tar")
    assert count == 3 and digest == hashlib.sha256(data).hexdigest()
    with AtomicShardWriter(tmp_path / "plain.tar") as w:
        for i in range(3):
            w.write(f"x-{i:09d}", _members(i)[0])
        assert w.close()[1] == digest
    with pytest.raises(RuntimeError):
        with AtomicShardWriter("shards/x-000001.tar", location=loc) as w:
            w.write("x-000000009", _members(9)[0])
            raise RuntimeError("worker died")
    assert loc.listdir("shards") == ["x-000000.tar"]


def test_atomic_files_get_the_usual_permissions(tmp_path):
    """A shard or manifest written through a temp file is as readable as one open() creates (mkstemp
    alone would leave it 0600: a corpus other users on a cluster cannot read)."""
    import os

    from models.files import write_json_atomic

    mask = os.umask(0o022)
    try:
        with AtomicShardWriter(tmp_path / "s.tar") as w:
            w.write("k-0", _members(0)[0])
            w.close()
        write_json_atomic(tmp_path / "m.json", {"a": 1})
        plain = tmp_path / "plain"
        plain.write_bytes(b"")
    finally:
        os.umask(mask)
    want = plain.stat().st_mode & 0o777
    assert want == 0o644
    assert (tmp_path / "s.tar").stat().st_mode & 0o777 == want == (tmp_path / "m.json").stat().st_mode & 0o777
