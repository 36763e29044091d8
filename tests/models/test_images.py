"""models.images.decode_image: displayed orientation, clear refusals, and no pixels allocated for a bomb."""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np
import pytest

from models.images import ImageDecodeError, decode_image


def _png(rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    return buf.tobytes()


def _png_header_only(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk))


def test_decodes_rgb_exactly():
    rgb = np.random.default_rng(0).integers(0, 256, (7, 5, 3), dtype=np.uint8)
    out = decode_image(_png(rgb))
    assert out.dtype == np.uint8 and out.shape == (7, 5, 3)
    np.testing.assert_array_equal(out, rgb)  # RGB order, not OpenCV's BGR


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "empty"),
        (b"hello, not an image", "not a decodable image"),
        (b"\xff\xd8\xff\xe0garbage", "not a decodable"),
    ],
)
def test_refusals_say_why(data, why):
    with pytest.raises(ImageDecodeError, match=why):
        decode_image(data)


def test_a_header_declaring_too_many_pixels_is_refused_before_decoding():
    with pytest.raises(ImageDecodeError, match="100000×90000 pixels is larger than the limit"):
        decode_image(_png_header_only(100_000, 90_000))


def test_jpeg_header_size_is_read():
    rgb = np.zeros((40, 30, 3), np.uint8)
    ok, buf = cv2.imencode(".jpg", rgb)
    with pytest.raises(ImageDecodeError, match="30×40 pixels"):
        decode_image(buf.tobytes(), max_pixels=1000)
    assert decode_image(buf.tobytes(), max_pixels=1200).shape == (40, 30, 3)


def test_exif_orientation_is_applied():
    # A JPEG of 16×8 pixels (left half black, right half white) with EXIF orientation 6 (rotate 90° clockwise).
    rgb = np.zeros((8, 16, 3), np.uint8)
    rgb[:, 8:] = 255
    ok, buf = cv2.imencode(".jpg", rgb, [cv2.IMWRITE_JPEG_QUALITY, 100])
    jpg = buf.tobytes()
    tiff = b"MM\x00*\x00\x00\x00\x08" + struct.pack(">H", 1) + struct.pack(">HHIHH", 0x0112, 3, 1, 6, 0) + b"\0\0\0\0"
    app1 = b"Exif\x00\x00" + tiff
    exif = b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1
    out = decode_image(jpg[:2] + exif + jpg[2:])
    assert out.shape == (16, 8, 3)  # displayed: turned a quarter
    assert out[:8].mean() < 60 and out[8:].mean() > 200  # black (the left) is now on top
