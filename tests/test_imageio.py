import cv2
import numpy as np
import pytest

from synth.imageio import decode_image
from synth.types import Rejected


def _png(img):
    ok, buf = cv2.imencode(".png", img)
    assert ok
    return buf.tobytes()


def test_corrupt_bytes_are_a_counted_reason():
    with pytest.raises(Rejected) as e:
        decode_image(b"\x89PNG\r\n\x1a\n garbage", stage="background", what="bad.png", allow_gray=False)
    assert e.value.stage == "background" and e.value.reason == "unreadable" and "bad.png" in e.value.detail


def test_grey_rejected_for_backgrounds_converted_for_crops():
    g = np.full((8, 8), 77, np.uint8)
    with pytest.raises(Rejected, match="grayscale"):
        decode_image(_png(g), stage="background", what="g.png", allow_gray=False)
    rgb = decode_image(_png(g), stage="crop", what="g.png", allow_gray=True)
    assert rgb.shape == (8, 8, 3) and (rgb == 77).all()


def test_rgba_transparent_rejected_opaque_kept_and_channel_order_right():
    bgra = np.zeros((4, 4, 4), np.uint8)
    bgra[..., 0], bgra[..., 2], bgra[..., 3] = 200, 10, 255  # blue in OpenCV order
    rgb = decode_image(_png(bgra), stage="b", what="o.png", allow_gray=False)
    assert rgb[0, 0].tolist() == [10, 0, 200]
    bgra[0, 0, 3] = 0
    with pytest.raises(Rejected, match="transparent"):
        decode_image(_png(bgra), stage="b", what="t.png", allow_gray=False)


def test_16bit_is_scaled_to_8bit():
    img16 = np.full((4, 4, 3), 65535, np.uint16)
    img16[0, 0] = 257 * 100
    out = decode_image(_png(img16), stage="b", what="16.png", allow_gray=False)
    assert out.dtype == np.uint8 and out[1, 1].tolist() == [255] * 3 and out[0, 0].tolist() == [100] * 3
