"""What a non-editable install gets: the wheel carries the dataset catalog, and a catalog file is
read strictly (no silently empty catalog)."""
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from models.datasets import DatasetError, load_catalog

REPO = Path(__file__).resolve().parent.parent
# benchmark and source names the project's catalog has always had
KNOWN = {"realce-val-x4", "svt-test", "textzoom-easy", "div2k-train-hr", "ctr-scene-train"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """The project built into a wheel, offline, from a copy of the source tree (so the build's
    build/ and egg-info never touch the working tree)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for d in ("models", "synth", "evalkit", "pipelines"):
        shutil.copytree(REPO / d, src / d, symlinks=True, ignore=ignore)
    for f in ("pyproject.toml", "README.md", "datasets.yaml"):
        p = REPO / f
        if p.is_symlink():  # keep the link as the repository has it
            (src / f).symlink_to(os.readlink(p))
        else:
            shutil.copy2(p, src / f)
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                        "-q", "-w", str(tmp / "dist"), str(src)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    (whl,) = (tmp / "dist").glob("textsr_kit-*.whl")
    return whl


def test_wheel_holds_the_catalog_and_the_installed_package_reads_it(wheel, tmp_path):
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        assert "models/datasets.yaml" in names
        packaged = z.read("models/datasets.yaml")
    # the wheel's catalog is the repository's top-level one (a symlink to the package file)
    assert packaged == (REPO / "datasets.yaml").read_bytes()
    target = tmp_path / "T"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target",
                        str(target), str(wheel)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = ("import models.datasets as d; c = d.load_catalog(); "
            "print(d.__file__); print(' '.join(sorted(c)))")
    env = {**os.environ, "PYTHONPATH": str(target)}
    env.pop("TEXTSR_DATASETS", None)
    r = subprocess.run([sys.executable, "-P", "-c", code], cwd=elsewhere, env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    where, names = r.stdout.splitlines()
    assert Path(where).is_relative_to(target), where  # the installed copy, not the source tree
    assert KNOWN <= set(names.split())
    assert set(names.split()) == set(load_catalog())


@pytest.mark.parametrize("text, needle", [
    ("", "the file is empty"),
    ("# only comments\n", "the file is empty"),
    ("svt-test:\n  format: svt\n  root: /x\n", "no top-level 'datasets:' key (found top-level keys svt-test)"),
    ("dataset:\n  a: {format: svt, root: /x}\n", "no top-level 'datasets:' key (found top-level keys dataset)"),
    ("- a\n- b\n", "no top-level 'datasets:' key (found a list)"),
    ("datasets:\n  a: {format: svt, root: /x}\nsvt-test: {format: svt, root: /y}\n",
     "unknown top-level key(s) svt-test"),
    ("datasets: [a, b]\n", "'datasets:' must be a mapping"),
])
def test_user_catalog_without_datasets_mapping_is_an_error_naming_the_file(tmp_path, text, needle):
    f = tmp_path / "mine.yaml"
    f.write_text(text)
    with pytest.raises(DatasetError) as e:
        load_catalog(f)
    assert str(f) in str(e.value) and needle in str(e.value)


def test_user_catalog_adds_and_overrides_entries(tmp_path):
    f = tmp_path / "mine.yaml"
    f.write_text("datasets:\n  svt-test: {format: svt, root: /data/svt, split: test}\n"
                 "  my-photos: {format: image-folder, root: /data/photos}\n")
    cat = load_catalog(f)
    assert cat["svt-test"].root == "/data/svt" and cat["my-photos"].format == "image-folder"
    assert KNOWN <= set(cat)
    f.write_text("datasets:\n")  # deliberately nothing to add
    assert set(load_catalog(f)) == set(load_catalog())
