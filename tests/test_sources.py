import numpy as np
import pytest

from models.datasets import DatasetError, load_catalog
from synth.imageio import decode_image
from synth.recipe import SourceSpec
from synth.sources.images import CtrLmdb, FolderLabels, ImageFolder, SkimagePhotos, open_source
from tests.helpers import png_bytes, word_crop, write_ctr_lmdb, write_png


def test_ctr_lmdb_reads_the_published_layout(tmp_path):
    crops = [word_crop("HELLO"), word_crop("世界") if False else word_crop("WORLD")]
    root = write_ctr_lmdb(tmp_path / "ctr", [(png_bytes(c), t) for c, t in zip(crops, ["HELLO", "WORLD"])])
    src = CtrLmdb(root, "ctr-test")
    assert len(src) == 2
    assert src.label(1) == "WORLD" and src.item_id(0) == "ctr-test:000000001"
    np.testing.assert_array_equal(decode_image(src.load(0), stage="t", what="x", allow_gray=True), crops[0])


def test_ctr_lmdb_without_num_samples_names_the_layout(tmp_path):
    import lmdb

    env = lmdb.open(str(tmp_path / "bad"), map_size=1 << 20)
    env.close()
    with pytest.raises(DatasetError, match="num-samples"):
        len(CtrLmdb(tmp_path / "bad"))


def test_folder_labels_tab_and_space_and_empty(tmp_path):
    write_png(tmp_path / "a.png", word_crop("ABC"))
    write_png(tmp_path / "b.png", word_crop("two words"))
    (tmp_path / "labels.txt").write_text("a.png\tABC\nb.png two words\n\nc.png\n", encoding="utf-8")
    src = FolderLabels(tmp_path)
    assert len(src) == 3
    assert [src.label(i) for i in range(3)] == ["ABC", "two words", ""]
    assert src.load(2) == b""  # missing file: decoded later as an 'unreadable' reason


def test_image_folder_is_sorted_and_recursive(tmp_path):
    for name in ("b/2.png", "a.jpg", "b/1.png", "notes.txt"):
        p = tmp_path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    assert ImageFolder(tmp_path).files == ["a.jpg", "b/1.png", "b/2.png"]


def test_embedded_photos_are_real_colour_images():
    src = SkimagePhotos()
    assert len(src) >= 9
    for i in range(len(src)):
        img = decode_image(src.load(i), stage="b", what=src.item_id(i), allow_gray=False)
        assert img.ndim == 3 and img.shape[2] == 3 and img.std() > 10


def test_missing_root_names_dataset_path_and_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("TEXTSR_DATA", str(tmp_path))
    cat = load_catalog()
    with pytest.raises(DatasetError) as e:
        open_source(SourceSpec(name="div2k-train-hr"), catalog=cat, want_labels=False)
    msg = str(e.value)
    assert "div2k-train-hr" in msg and str(tmp_path / "DIV2K") in msg and "TEXTSR_DATA" in msg


def test_unknown_source_suggests(tmp_path):
    with pytest.raises(DatasetError, match="did you mean 'div2k-train-hr'"):
        open_source(SourceSpec(name="div2k-train"), catalog=load_catalog(), want_labels=False)


def test_user_catalog_overrides_entries(tmp_path):
    f = tmp_path / "mine.yaml"
    f.write_text(f"datasets:\n  div2k-train-hr: {{format: image-folder, root: {tmp_path}}}\n", encoding="utf-8")
    assert load_catalog(f)["div2k-train-hr"].root_path() == tmp_path
    bad = tmp_path / "bad.yaml"
    bad.write_text("datasets:\n  x: {format: zip, root: /}\n", encoding="utf-8")
    with pytest.raises(DatasetError, match="unknown format 'zip'"):
        load_catalog(bad)


def test_split_words_cuts_at_word_spaces_only():
    from synth.sources.images import split_words

    line = word_crop("Region based", size=32)
    parts = split_words(line, "Region based")
    assert [t for _, t in parts] == ["Region", "based"]
    assert parts[0][0].shape[1] + parts[1][0].shape[1] < line.shape[1]
    # label says three words but the ink has two: keep the line whole
    assert [t for _, t in split_words(line, "Reg ion based")] == ["Reg ion based"]


def test_embedded_page_gives_real_word_crops():
    from models.ocr import create_ocr
    from synth.sources.images import SkimagePageLines

    src = SkimagePageLines(create_ocr())
    labels = [src.label(i) for i in range(len(src))]
    # PP-OCRv4 reads each line on its own (no batch padding), and then drops some spaces of the
    # third line ("markersare pixelsthatwecanlabel"): such a line stays one crop, labelled as read
    assert len(src) >= 8 and "segmentation" in labels and "histogram" in labels
    assert any("markers" in lab for lab in labels)


def test_textseg_words_come_with_their_own_masks(tmp_path):
    import json

    import cv2

    from synth.sources.images import TextSegWords

    img = word_crop("HELLO WORLD", size=40)
    h, w = img.shape[:2]
    (tmp_path / "image").mkdir()
    (tmp_path / "semantic_label").mkdir()
    (tmp_path / "annotation").mkdir()
    cv2.imwrite(str(tmp_path / "image" / "a00001.jpg"), img[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 98])
    mask = np.where(img.mean(2) < 128, 100, 0).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "semantic_label" / "a00001_maskfg.png"), mask)
    half = w // 2
    anno = {"0000": {"text": "HELLO", "bbox": [0, 0, half, 0, half, h, 0, h]},
            "0001": {"text": "WORLD", "bbox": [half, 0, w - 1, 0, w - 1, h, half, h]},
            "0002": {"text": "###", "bbox": [0, 0, 5, 0, 5, 5, 0, 5]}}
    (tmp_path / "annotation" / "a00001_anno.json").write_text(json.dumps(anno))
    src = TextSegWords(tmp_path, "ts")
    assert len(src) == 2 and [src.label(i) for i in range(2)] == ["HELLO", "WORLD"]
    crop, m = src.load(0), src.mask(0)
    assert crop.shape[:2] == m.shape and set(np.unique(m)) <= {0, 255} and (m > 0).mean() > 0.05
