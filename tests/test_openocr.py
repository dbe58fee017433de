"""``openocr-mobile`` (models/ocr/openocr_engine.py) and the glyphsr protocol's choice of OCR engine.

OpenOCR's ONNX files cannot be fetched here (no network). Its det/rec share PP-OCR's I/O convention
exactly (DB probability map ``Nx1xHxW``; CTC over blank + PaddleOCR's 6623-key ``ppocr_keys_v1.txt`` +
space, 48-px-tall input normalised to [-1, 1]; see the module docstring), so these tests run *our
OpenOCR pipeline* with the PP-OCRv4 det/rec ONNX files of the ``rapidocr_onnxruntime`` wheel placed
under OpenOCR's file names, and the dictionary written from that recogniser's metadata (its sha256 is
the one pinned for OpenOCR's file, so the resolver accepts it: the two dictionaries are byte-identical).

What this proves: our pre-processing (detector resize/normalisation, recogniser resize/normalisation/
padding), DB post-processing, crop, reading order and CTC decoding are right — checked against
RapidOCR's independent implementation of the same steps on the same model. What it does not prove:
anything about OpenOCR's own weights (their accuracy, or that they load: only their documented
input/output shapes were read from OpenOCR's code).
"""
from __future__ import annotations

import difflib
import json
import os
from pathlib import Path

import numpy as np
import pytest

from models.ocr import create_ocr, list_ocr
from models.ocr.openocr_engine import (
    OPENOCR_DET,
    OPENOCR_DICT,
    OPENOCR_REC,
    OpenOCREngine,
    db_boxes,
)
from models.ocr.rapidocr_engine import _package_dir
from models.weights import WeightsMissingError, sha256_file


def _stand_ins(folder: Path) -> Path:
    """PP-OCRv4's ONNX files under OpenOCR's names, plus the dictionary, in ``folder``."""
    import onnxruntime as ort

    folder.mkdir(parents=True, exist_ok=True)
    wheel = _package_dir("rapidocr_onnxruntime") / "models"
    (folder / OPENOCR_DET.filename).symlink_to(wheel / "ch_PP-OCRv4_det_infer.onnx")
    (folder / OPENOCR_REC.filename).symlink_to(wheel / "ch_PP-OCRv4_rec_infer.onnx")
    meta = ort.InferenceSession(str(wheel / "ch_PP-OCRv4_rec_infer.onnx"),
                                providers=["CPUExecutionProvider"]).get_modelmeta().custom_metadata_map
    (folder / OPENOCR_DICT.filename).write_bytes("\n".join(meta["character"].splitlines()).encode("utf-8"))
    return folder


@pytest.fixture(scope="module")
def stand_in_dir(tmp_path_factory) -> Path:
    return _stand_ins(tmp_path_factory.mktemp("openocr") / "weights")


@pytest.fixture(scope="module")
def engine(stand_in_dir) -> OpenOCREngine:
    d = stand_in_dir
    return create_ocr("openocr-mobile", num_threads=2, det_model_path=str(d / OPENOCR_DET.filename),
                      rec_model_path=str(d / OPENOCR_REC.filename), dict_path=str(d / OPENOCR_DICT.filename))


@pytest.fixture(scope="module")
def ppocr():
    return create_ocr("rapidocr-ppocrv4", num_threads=2)


@pytest.fixture(scope="module")
def page() -> np.ndarray:
    from skimage import data

    return np.repeat(data.page()[..., None], 3, -1)


def test_registered_and_dictionary_is_openocrs(stand_in_dir):
    assert "openocr-mobile" in list_ocr() and list_ocr("openocr-*") == ["openocr-mobile"]
    # the stand-in dictionary is byte-identical to OpenOCR's tools/utils/ppocr_keys_v1.txt
    assert sha256_file(stand_in_dir / OPENOCR_DICT.filename) == OPENOCR_DICT.sha256


def test_missing_weights_name_the_file_where_looked_and_how_to_fetch(isolated_weights, tmp_path):
    with pytest.raises(WeightsMissingError) as e:
        OpenOCREngine()
    msg = str(e.value)
    assert "'openocr_det_model.onnx' not found" in msg
    assert str(tmp_path / "weights" / "openocr_det_model.onnx") in msg  # where it looked
    assert "releases/download/develop0.0.1/openocr_det_model.onnx" in msg and "curl -L -o" in msg
    with pytest.raises(WeightsMissingError, match=r"(?s)openocr_rec_model.onnx.*nope.onnx \(explicit path\)"):
        OpenOCREngine(det_model_path=str(_package_dir("rapidocr_onnxruntime") / "models" / "ch_PP-OCRv4_det_infer.onnx"),
                      rec_model_path=str(tmp_path / "nope.onnx"))
    with pytest.raises(WeightsMissingError):
        OpenOCREngine.check_weights()


def test_recognize_equals_rapidocr_on_the_same_crops(engine, ppocr, page):
    """Our recogniser input and CTC decoding against RapidOCR's (same PP-OCRv4 model, batch of one):
    identical strings, scores equal to float32 rounding."""
    crops = [page[8:38, 0:300], page[44:72, 0:385], page[110:146, 0:180], page[160:195, 10:245],
             page[44:72, 0:60], page[8:38, 100:140]]
    crops = [np.ascontiguousarray(c) for c in crops]
    ours, theirs = engine.recognize(crops), ppocr.recognize(crops)
    assert [t for t, _ in ours] == [t for t, _ in theirs]
    assert ours[0][0] == "Region-based segmentation"
    np.testing.assert_allclose([s for _, s in ours], [s for _, s in theirs], rtol=0, atol=1e-5)


def test_recognize_is_batch_independent(engine, page):
    word, wide = np.ascontiguousarray(page[44:72, 0:60]), np.ascontiguousarray(page[44:72, 0:385])
    alone = engine.recognize([word])
    assert engine.recognize([wide, word, wide])[1] == alone[0]
    assert engine.recognize([]) == []


def test_detect_prob_equals_rapidocr_map(engine, ppocr, page):
    """Same detector, same convention (BGR, ImageNet statistics, sides rounded to 32): same map."""
    ours, theirs = engine.detect_prob(page), ppocr.detect_prob(page)
    assert ours.shape == page.shape[:2] and ours.dtype == np.float32
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-5)


def test_db_boxes_equal_paddleocrs_postprocess(engine, page):
    """Our DB post-processing against RapidOCR's port of PaddleOCR's ``DBPostProcess`` with OpenOCR's
    settings (thresh 0.3, box_thresh 0.6, unclip 1.5, slow score, no dilation)."""
    from rapidocr_onnxruntime.ch_ppocr_det.utils import DBPostProcess

    bgr = np.ascontiguousarray(page[:, :, ::-1])
    prob = engine._prob_map(bgr, 960, "max")
    ours = db_boxes(prob, page.shape[:2])
    ref, _ = DBPostProcess(thresh=0.3, box_thresh=0.6, max_candidates=1000, unclip_ratio=1.5,
                           score_mode="slow", use_dilation=False)(prob[None, None], page.shape[:2])
    assert len(ours) >= 6
    np.testing.assert_array_equal(np.stack(ours), ref)


def test_readtext_reads_the_page_like_ppocr(engine, ppocr, page):
    """End to end on real pixels: every line PP-OCRv4 (RapidOCR's pipeline, its own DB settings) reads
    is read by ours nearly alike (their boxes differ a little, so crops and a space may differ)."""
    ours = engine.readtext(page)
    texts = [ln.text for ln in ours]
    assert texts[0] == "Region-based segmentation"
    assert "Let us first determine markers of the coins and the" in texts
    assert len(ours) >= 6 and all(ln.score >= 0.5 and ln.polygon.shape == (4, 2) for ln in ours)
    tops = [ln.bbox[1] for ln in ours]
    assert tops == sorted(tops)  # reading order: top to bottom
    theirs = [ln.text for ln in ppocr.readtext(page)]
    assert theirs
    for t in theirs:
        best = max(difflib.SequenceMatcher(None, t, o).ratio() for o in texts)
        assert best >= 0.9, (t, texts)


def test_identity_keys_on_content(engine, stand_in_dir):
    ident = engine.identity()
    assert ident["det_model_sha256"] == sha256_file(stand_in_dir / OPENOCR_DET.filename)
    assert ident["rec_model_sha256"] == sha256_file(stand_in_dir / OPENOCR_REC.filename)
    assert ident["dict_sha256"] == OPENOCR_DICT.sha256
    assert ident["engine"] == "openocr-mobile" and ident["db"]["unclip_ratio"] == 1.5


# -- the glyphsr protocol's engine choice ------------------------------------------------------------
def test_glyphsr_prefers_openocr_and_falls_back_to_ppocr(isolated_weights, tmp_path):
    from evalkit.protocols import choose_ocr_engine, get_protocol

    g = get_protocol("glyphsr")
    assert g.ocr_engines == ("openocr-mobile", "rapidocr-ppocrv4") and g.version == "2"
    assert g.to_dict()["ocr_engines"] == ["openocr-mobile", "rapidocr-ppocrv4"]
    name, note = choose_ocr_engine(g, None)
    assert name == "rapidocr-ppocrv4"
    assert note.startswith("openocr-mobile weights not found: ") and "openocr_det_model.onnx" in note
    assert note.endswith("rapidocr-ppocrv4 used")
    assert choose_ocr_engine(g, "paddleocr") == ("paddleocr", None)           # --ocr wins
    assert choose_ocr_engine(get_protocol("osediff"), None) == ("rapidocr-ppocrv4", None)
    _stand_ins(Path(os.environ["TEXTSR_WEIGHTS"]))                            # where the resolver looks
    name, note = choose_ocr_engine(g, None)
    assert name == "openocr-mobile" and "weights found" in note


def test_evalkit_score_glyphsr_records_the_engine_choice(isolated_weights, tmp_path, monkeypatch, page, capsys):
    import cv2

    from evalkit.runner import ScoreConfig, score

    monkeypatch.setenv("TEXTSR_CACHE", str(tmp_path / "cache"))
    hr = tmp_path / "hr"
    hr.mkdir()
    cv2.imwrite(str(hr / "page.png"), page[:, :, ::-1])
    base = {"sr_dir": str(hr), "hr_dir": str(hr), "metrics": ["ocr_f1"], "limit": 1, "protocol": "glyphsr",
            "progress": False}
    s = score(ScoreConfig(out=tmp_path / "a", **base))
    assert s["ocr_engine"] == "rapidocr-ppocrv4" and "openocr-mobile weights not found" in s["ocr_engine_choice"]
    assert s["protocol"]["version"] == "2" and s["protocol"]["ocr_engines"][0] == "openocr-mobile"
    assert "openocr-mobile weights not found" in capsys.readouterr().err
    _stand_ins(Path(os.environ["TEXTSR_WEIGHTS"]))
    s = score(ScoreConfig(out=tmp_path / "b", **base))
    assert s["ocr_engine"] == "openocr-mobile" and s["ocr_engine_settings"]["engine"] == "openocr-mobile"
    on_disk = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert on_disk["ocr_engine"] == "openocr-mobile" and "weights found" in on_disk["ocr_engine_choice"]
    s = score(ScoreConfig(out=tmp_path / "c", ocr_engine="rapidocr-ppocrv4", **base))
    assert s["ocr_engine"] == "rapidocr-ppocrv4" and s["ocr_engine_choice"] is None


def test_readwords_splits_a_line_at_the_decoded_character_positions(engine):
    """One rendered line "OPEN NOW 24": readwords gives the three words, each quad over its own ink
    (IoU >= 0.5 with the word's drawn box), from the CTC steps of our decoder; readtext is one line."""
    from helpers import words_on_one_line

    from evalkit.metrics.ocr_match import polygon_iou

    img, boxes = words_on_one_line()
    assert [ln.text for ln in engine.readtext(img)] == ["OPEN NOW 24"]
    words = engine.readwords(img)
    assert [w.text for w in words] == ["OPEN", "NOW", "24"]
    for w, box in zip(words, boxes):
        assert polygon_iou(w.polygon, box) >= 0.5, (w.text, w.polygon.tolist(), box.tolist())
    assert "CTC positions" in engine.word_boxes
