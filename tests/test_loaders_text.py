"""The text-benchmark loaders read tiny fixtures written in each dataset's published layout."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data

from evalkit.loaders.base import AnnotationError
from evalkit.loaders.ctw1500 import CTW1500Loader
from evalkit.loaders.cute80 import CUTE80Loader
from evalkit.loaders.icdar2015 import ICDAR2015Loader
from evalkit.loaders.realce import RealCELoader
from evalkit.loaders.svt import SVTLoader
from evalkit.loaders.totaltext import TotalTextLoader
from models.datasets import DatasetEntry

_PHOTO = skimage.data.astronaut()  # RGB 512×512


def img(path: Path, h: int = 64, w: int = 96, y: int = 0, x: int = 0) -> np.ndarray:
    """Write a real photo crop (RGB) as the file at ``path``; return the RGB crop."""
    crop = np.ascontiguousarray(_PHOTO[y:y + h, x:x + w])
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), crop[:, :, ::-1])
    return crop


def entry(fmt: str, root: Path, **extra) -> DatasetEntry:
    return DatasetEntry(name=f"t-{fmt}", format=fmt, root=str(root), extra=extra)


def write(path: Path, text: str | bytes, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode(encoding))
    return path


# ------------------------------------------------------------------ Real-CE

def realce(tmp: Path, split: str = "val") -> Path:
    names = ["ip11pro_output_TextSR_renew_15.jpg", "ip11pro_output_TextSR_renew_48.jpg"]
    for i, n in enumerate(names):
        # the three focal lengths are stored registered at one size (as the official loader assumes)
        img(tmp / split / "52mm" / n, 64, 96, 0, 100 * i)
        img(tmp / split / "26mm" / n, 64, 96, 200, 100 * i)
        img(tmp / split / "13mm" / n, 64, 96, 300, 100 * i)
    write(tmp / split / "valid_list.txt", "\n".join(names) + "\n")
    lines = "10,5,60,5,60,30,10,30,你好,世界\r\n0,0,8,0,8,8,0,8,###\r\n70,40,90,40,90,60,70,60,OPEN 24\r\n"
    if split == "val":
        for n in names:
            write(tmp / "val" / "annos" / (Path(n).stem + ".txt"), lines, "gbk")
    else:
        for n in names:
            write(tmp / "train" / "trans_annos_52mm_renov" / ("res_" + Path(n).stem + ".txt"),
                  "10.0,5.0,60.0,5.0,60.0,30.0,10.0,30.0,中文,A\n")
    return tmp


@pytest.mark.parametrize("scale,focal", [(4, "13mm"), (2, "26mm")])
def test_realce_val(tmp_path, scale, focal):
    root = realce(tmp_path)
    ld = RealCELoader(entry("realce", root, split="val", scale=scale))
    assert ld.has_lr and ld.has_texts
    assert ld.keys() == ["ip11pro_output_TextSR_renew_15", "ip11pro_output_TextSR_renew_48"]
    it = ld.item("ip11pro_output_TextSR_renew_48")
    name = "ip11pro_output_TextSR_renew_48.jpg"
    assert it.hr_path == root / "val" / "52mm" / name
    hr = cv2.imread(str(root / "val" / "52mm" / name))[:, :, ::-1]
    assert np.array_equal(it.hr, hr[: 64 // scale * scale, : 96 // scale * scale])
    assert it.lr.shape == (64 // scale, 96 // scale, 3)
    want_lr = cv2.resize(cv2.imread(str(root / "val" / focal / name))[:, :, ::-1], (96 // scale, 64 // scale),
                         interpolation=cv2.INTER_CUBIC)
    assert np.array_equal(it.lr, want_lr)
    assert it.meta["lr_focal"] == focal and it.meta["lr_resized"]
    t = it.texts
    assert [x.text for x in t] == ["你好,世界", "###", "OPEN 24"]
    assert [x.dont_care for x in t] == [False, True, False]
    assert [x.language for x in t] == ["zh", "en", "en"]
    assert t[0].polygon.dtype == np.float32
    assert np.array_equal(t[0].polygon, [[10, 5], [60, 5], [60, 30], [10, 30]])
    assert len(list(ld.items())) == 2


def test_realce_train_and_aligned_list(tmp_path):
    root = realce(tmp_path, "train")
    write(root / "aligned.txt", "ip11pro_output_TextSR_renew_48.jpg\n")
    ld = RealCELoader(entry("realce", root, split="train", aligned_list="aligned.txt"))
    assert ld.scale == 4 and ld.keys() == ["ip11pro_output_TextSR_renew_48"]
    (t,) = ld.item("ip11pro_output_TextSR_renew_48").texts
    assert t.text == "中文,A" and t.language == "zh"


def test_realce_lr_already_small(tmp_path):
    root = realce(tmp_path)
    n = "ip11pro_output_TextSR_renew_15.jpg"
    small = img(root / "val" / "13mm" / n, 16, 24)
    it = RealCELoader(entry("realce", root)).item("ip11pro_output_TextSR_renew_15")
    assert not it.meta["lr_resized"] and it.lr.shape == small.shape


def test_realce_bad(tmp_path):
    root = realce(tmp_path)
    bad = write(root / "val" / "annos" / "ip11pro_output_TextSR_renew_15.txt", "1,2,3,4,5,6,7,x,中\n", "gbk")
    with pytest.raises(AnnotationError, match=r"renew_15\.txt:1: non-numeric coordinate 'x'") as e:
        list(RealCELoader(entry("realce", root)).items())
    assert e.value.path == str(bad) and e.value.line == 1
    ld = RealCELoader(entry("realce", root), skip_bad=True)
    assert [i.key for i in ld.items()] == ["ip11pro_output_TextSR_renew_48"] and len(ld.skipped) == 1
    # UTF-8 where GBK is expected -> undecodable, named with its line
    write(bad, "1,2,3,4,5,6,7,8,ok\n1,2,3,4,5,6,7,8,\xff\n".encode("latin-1"))
    with pytest.raises(AnnotationError, match=r"renew_15\.txt:2: not valid gbk"):
        RealCELoader(entry("realce", root)).item("ip11pro_output_TextSR_renew_15")
    write(bad, "1,2,3,4,5,6,7,text\n", "gbk")
    with pytest.raises(AnnotationError, match=r":1: expected 8 comma-separated"):
        RealCELoader(entry("realce", root)).item("ip11pro_output_TextSR_renew_15")
    # a listed image missing from 13mm
    (root / "val" / "13mm" / "ip11pro_output_TextSR_renew_48.jpg").unlink()
    with pytest.raises(AnnotationError, match=r"13mm/ip11pro_output_TextSR_renew_48\.jpg: image listed"):
        RealCELoader(entry("realce", root)).keys()
    ld = RealCELoader(entry("realce", root), skip_bad=True)
    assert ld.keys() == ["ip11pro_output_TextSR_renew_15"] and len(ld.skipped) == 1
    with pytest.raises(ValueError, match="scales"):
        RealCELoader(entry("realce", root, scale=3))


# ------------------------------------------------------------------ SVT

SVT_XML = """<?xml version="1.0" encoding="utf-8"?>
<tagset>
  <image>
    <imageName>img/14_03.jpg</imageName>
    <address>341 Southwest 10th Avenue Portland OR</address>
    <lex>LIVING,ROOM,THEATERS</lex>
    <Resolution x="96" y="64"/>
    <taggedRectangles>
      <taggedRectangle height="20" width="30" x="5" y="6">
        <tag>LIVING</tag>
      </taggedRectangle>
      <taggedRectangle height="10" width="12" x="50" y="40">
        <tag>ROOM</tag>
      </taggedRectangle>
    </taggedRectangles>
  </image>
  <image>
    <imageName>img/18_01.jpg</imageName>
    <lex>ACE</lex>
    <Resolution x="96" y="64"/>
    <taggedRectangles>
      <taggedRectangle height="{h}" width="8" x="1" y="2"><tag>ACE</tag></taggedRectangle>
    </taggedRectangles>
  </image>
</tagset>
"""


def test_svt(tmp_path):
    root = tmp_path / "svt1"
    hr = img(root / "img" / "14_03.jpg")
    img(root / "img" / "18_01.jpg", y=100)
    write(root / "test.xml", SVT_XML.replace("{h}", "9"))
    ld = SVTLoader(entry("svt", tmp_path, split="test"))   # finds svt1/
    assert not ld.has_lr and ld.keys() == ["14_03", "18_01"]
    it = ld.item("14_03")
    assert it.hr_path == root / "img" / "14_03.jpg" and it.hr.shape == hr.shape and it.lr is None
    assert [t.text for t in it.texts] == ["LIVING", "ROOM"]
    assert np.array_equal(it.texts[0].polygon, [[5, 6], [35, 6], [35, 26], [5, 26]])
    assert not it.texts[0].dont_care and it.texts[0].language == "en"
    assert it.meta["lexicon"] == ["LIVING", "ROOM", "THEATERS"]

    write(root / "test.xml", SVT_XML.replace("{h}", "nine"))
    with pytest.raises(AnnotationError, match=r"test\.xml:22: non-numeric taggedRectangle"):
        SVTLoader(entry("svt", root)).keys()
    ld = SVTLoader(entry("svt", root), skip_bad=True)
    assert ld.keys() == ["14_03"] and len(ld.skipped) == 1
    write(root / "test.xml", SVT_XML.replace("{h}", "9").replace("</tagset>", ""))
    with pytest.raises(AnnotationError, match=r"test\.xml:\d+: not well-formed XML"):
        SVTLoader(entry("svt", root)).keys()
    write(root / "test.xml", SVT_XML.replace("{h}", "9"))
    (root / "img" / "18_01.jpg").unlink()
    with pytest.raises(AnnotationError, match=r"test\.xml:18: image .*18_01\.jpg is missing"):
        SVTLoader(entry("svt", root)).keys()


# ------------------------------------------------------------------ SCUT-CTW1500

CTW_POLY = [10, 5, 20, 4, 30, 3, 40, 3, 50, 4, 60, 5, 70, 6, 70, 20, 60, 19, 50, 18, 40, 18, 30, 18, 20, 19, 10, 20]


def test_ctw1500_test_txt(tmp_path):
    img(tmp_path / "test_images" / "1001.jpg")
    img(tmp_path / "test_images" / "1002.jpg", y=64)
    coords = ",".join(map(str, CTW_POLY))
    write(tmp_path / "ctw1500_test_labels" / "0001001.txt", f"{coords},####Latin 9, Co.\n{coords},#######\n")
    write(tmp_path / "ctw1500_test_labels" / "0001002.txt", f"{coords},####OK\n{coords[:-3]},####short\n")
    ld = CTW1500Loader(entry("ctw1500", tmp_path, split="test"))
    assert ld.keys() == ["1001", "1002"]
    it = ld.item("1001")
    assert it.texts[0].polygon.shape == (14, 2) and np.array_equal(it.texts[0].polygon.ravel(), CTW_POLY)
    assert [(t.text, t.dont_care) for t in it.texts] == [("Latin 9, Co.", False), ("###", True)]
    with pytest.raises(AnnotationError, match=r"0001002\.txt:2: expected 28 coordinates then ####text"):
        ld.item("1002")
    ld = CTW1500Loader(entry("ctw1500", tmp_path, split="test"), skip_bad=True)
    assert [i.key for i in ld.items()] == ["1001"] and len(ld.skipped) == 1


def ctw_xml(segs: list[int], left: int, top: int) -> str:
    return f"""<Annotations>
  <image file="0001.jpg">
    <box height="20" left="{left}" top="{top}" width="60">
      <label>PARK</label>
      <segs>{",".join(map(str, segs))}</segs>
      <pts x="10" y="5" />
    </box>
    <box height="10" left="0" top="40" width="30">
      <label>###</label>
      <segs>{",".join(map(str, [0, 40] * 14))}</segs>
    </box>
  </image>
</Annotations>
"""


def test_ctw1500_train_xml(tmp_path):
    img(tmp_path / "train_images" / "0001.jpg")
    write(tmp_path / "ctw1500_train_labels" / "0001.xml", ctw_xml(CTW_POLY, 10, 3))
    ld = CTW1500Loader(entry("ctw1500", tmp_path, split="train"))
    it = ld.item("0001")
    assert it.meta["segs"] == "absolute"
    assert np.array_equal(it.texts[0].polygon.ravel(), CTW_POLY) and it.texts[0].text == "PARK"
    assert it.texts[1].dont_care and not it.texts[0].dont_care
    # the same polygon written as offsets from (left, top)
    big = [v + 200 for v in CTW_POLY]
    offs = [v - (210 if i % 2 == 0 else 203) for i, v in enumerate(big)]
    write(tmp_path / "ctw1500_train_labels" / "0001.xml", ctw_xml(offs, 210, 203))
    it = CTW1500Loader(entry("ctw1500", tmp_path, split="train")).item("0001")
    assert np.array_equal(it.texts[0].polygon.ravel(), big) and "offsets" in it.meta["segs"]
    write(tmp_path / "ctw1500_train_labels" / "0001.xml", ctw_xml(CTW_POLY[:-2], 10, 3))
    with pytest.raises(AnnotationError, match=r"0001\.xml:5: expected 28 coordinates, got 26"):
        CTW1500Loader(entry("ctw1500", tmp_path, split="train")).item("0001")


def test_ctw1500_2017_txt_and_overrides(tmp_path):
    img(tmp_path / "imgs" / "0003.jpg")
    offs = [v - (10 if i % 2 == 0 else 3) for i, v in enumerate(CTW_POLY)]
    write(tmp_path / "labels" / "0003.txt", ",".join(map(str, [10, 3, 70, 20] + offs)) + "\n")
    ld = CTW1500Loader(entry("ctw1500", tmp_path, images_dir="imgs", labels_dir="labels"))
    (t,) = ld.item("0003").texts
    assert np.array_equal(t.polygon.ravel(), CTW_POLY) and t.text == ""


# ------------------------------------------------------------------ ICDAR 2015

def test_icdar2015(tmp_path):
    img(tmp_path / "test_images" / "img_1.jpg")
    img(tmp_path / "test_images" / "img_2.jpg", y=64)
    write(tmp_path / "test_gts" / "gt_img_1.txt",
          "\ufeff377,117,463,117,465,130,378,130,Genaxis Theatre\r\n493,115,519,115,519,131,493,131,[06],x\r\n"
          "374,155,409,155,409,170,374,170,###\r\n")
    write(tmp_path / "test_gts" / "gt_img_2.txt", "1,2,3,4,5,6,7,8,ok\n1,2,3,4,5,6,7,A\n")
    ld = ICDAR2015Loader(entry("icdar2015", tmp_path, split="test"))
    assert ld.keys() == ["img_1", "img_2"]
    it = ld.item("img_1")
    assert [t.text for t in it.texts] == ["Genaxis Theatre", "[06],x", "###"]
    assert [t.dont_care for t in it.texts] == [False, False, True]
    assert np.array_equal(it.texts[0].polygon, [[377, 117], [463, 117], [465, 130], [378, 130]])
    assert it.hr_path == tmp_path / "test_images" / "img_1.jpg"
    with pytest.raises(AnnotationError, match=r"gt_img_2\.txt:2: expected 8 comma-separated"):
        ld.item("img_2")
    ld = ICDAR2015Loader(entry("icdar2015", tmp_path), skip_bad=True)
    assert [i.key for i in ld.items()] == ["img_1"] and len(ld.skipped) == 1


def test_icdar2015_official_names_and_missing(tmp_path):
    img(tmp_path / "ch4_training_images" / "img_7.jpg")
    img(tmp_path / "ch4_training_images" / "img_8.jpg")
    write(tmp_path / "ch4_training_localization_transcription_gt" / "gt_img_7.txt", "1,2,3,4,5,6,7,8,w\n")
    with pytest.raises(AnnotationError, match=r"gt_img_8\.txt: ground truth for img_8\.jpg is missing"):
        ICDAR2015Loader(entry("icdar2015", tmp_path, split="train")).keys()
    ld = ICDAR2015Loader(entry("icdar2015", tmp_path, split="train"), skip_bad=True)
    assert ld.keys() == ["img_7"] and ld.item("img_7").texts[0].text == "w" and len(ld.skipped) == 1


# ------------------------------------------------------------------ Total-Text

TT_GT = """x: [[259 313 389 427 354 302]], y: [[542 462 417 459 507 582]], ornt: [u'c'], transcriptions: [u'PAUL']
x: [[400 478 494 436]], y: [[398 380 448 465]], ornt: [u'#'], transcriptions: [u'#']
x: [[10 20 30
 40]], y: [[1 2 3 4]], ornt: [u'h'], transcriptions: [u"it's"]
"""


def test_totaltext(tmp_path):
    img(tmp_path / "Images" / "Test" / "img1.jpg")
    img(tmp_path / "Images" / "Test" / "img2.jpg")
    write(tmp_path / "txt_format" / "Test" / "poly_gt_img1.txt", TT_GT)
    write(tmp_path / "txt_format" / "Test" / "poly_gt_img2.txt",
          TT_GT + "x: [[1 2 3 z]], y: [[1 2 3 4]], ornt: [u'h'], transcriptions: [u'Z']\n")
    ld = TotalTextLoader(entry("totaltext", tmp_path, split="test"))
    assert ld.keys() == ["img1", "img2"]
    t = ld.item("img1").texts
    assert [x.text for x in t] == ["PAUL", "#", "it's"] and [x.dont_care for x in t] == [False, True, False]
    assert np.array_equal(t[0].polygon, np.stack([[259, 313, 389, 427, 354, 302], [542, 462, 417, 459, 507, 582]], 1))
    assert np.array_equal(t[2].polygon, [[10, 1], [20, 2], [30, 3], [40, 4]])
    with pytest.raises(AnnotationError, match=r"poly_gt_img2\.txt:5: non-numeric coordinate"):
        ld.item("img2")
    ld = TotalTextLoader(entry("totaltext", tmp_path, split="test"), skip_bad=True)
    assert [i.key for i in ld.items()] == ["img1"] and len(ld.skipped) == 1


# ------------------------------------------------------------------ CUTE80

def test_cute80(tmp_path):
    a = img(tmp_path / "timage" / "001.jpg", 32, 80)
    img(tmp_path / "timage" / "002.jpg", 30, 40, y=100)
    write(tmp_path / "test_label.txt", "timage/001.jpg RONALDO 1 RONALDO\ntimage/002.jpg 7 1 7\n"
                                       "timage/003.jpg BEACH 1 BEACH\n")
    with pytest.raises(AnnotationError, match=r"test_label\.txt:3: image timage/003\.jpg is missing"):
        CUTE80Loader(entry("cute80", tmp_path)).keys()
    ld = CUTE80Loader(entry("cute80", tmp_path), skip_bad=True)
    assert ld.keys() == ["001", "002"] and len(ld.skipped) == 1
    it = ld.item("001")
    assert it.hr.shape == a.shape and it.hr_path == tmp_path / "timage" / "001.jpg"
    (t,) = it.texts
    assert t.text == "RONALDO" and t.language == "en"
    assert np.array_equal(t.polygon, [[0, 0], [80, 0], [80, 32], [0, 32]])
