"""Image bytes → uint8 RGB pixels in displayed orientation: the one decoder of the batch pipeline and the endpoint.

OpenCV's ``cv2.imdecode(..., IMREAD_COLOR)`` applies the EXIF orientation, so pixels (and every keypoint) are in
the orientation a person sees, as in AlphaPose (``cv2.imread`` in ``alphapose/utils/detector.py``). The size is
checked from the header before pixels are allocated, so a small file that declares a huge image (a decompression
bomb) is refused instead of exhausting memory.
"""

from __future__ import annotations

import numpy as np

__all__ = ["decode_image", "ImageDecodeError", "MAX_IMAGE_PIXELS"]

#: Largest image decoded (width × height), 2× an 8K frame; larger ones are refused before decoding.
MAX_IMAGE_PIXELS = 80_000_000


class ImageDecodeError(ValueError):
    """The bytes are not an image this decoder reads (or it is too large); the message says which."""


def decode_image(data: bytes | np.ndarray, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """Decode JPEG/PNG/BMP/WebP bytes to uint8 RGB ``[H, W, 3]`` in displayed orientation.

    Args:
        data: the encoded file's bytes.
        max_pixels: refuse images whose header declares more pixels than this.
    Raises:
        ImageDecodeError: empty bytes, not a decodable image, or too many pixels.
    """
    import cv2

    buf = np.frombuffer(data, np.uint8) if not isinstance(data, np.ndarray) else data.reshape(-1).view(np.uint8)
    if not buf.size:
        raise ImageDecodeError("file is empty (0 bytes)")
    size = _header_size(buf)
    if size is not None and size[0] * size[1] > max_pixels:
        raise ImageDecodeError(f"image of {size[0]}×{size[1]} pixels is larger than the limit of {max_pixels} pixels")
    bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR)  # IMREAD_COLOR applies the EXIF orientation: displayed orientation
    if bgr is None:
        raise ImageDecodeError("not a decodable image")
    if bgr.shape[0] * bgr.shape[1] > max_pixels:
        raise ImageDecodeError(
            f"image of {bgr.shape[1]}×{bgr.shape[0]} pixels is larger than the limit of {max_pixels} pixels"
        )
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _header_size(buf: np.ndarray) -> tuple[int, int] | None:
    """(width, height) declared by a PNG or JPEG header, None when not read from it (other formats: OpenCV's own
    limit, ``OPENCV_IO_MAX_IMAGE_PIXELS``, still applies)."""
    b = buf.tobytes()[: 1 << 16]
    if b[:8] == b"\x89PNG\r\n\x1a\n" and len(b) >= 24 and b[12:16] == b"IHDR":
        return int.from_bytes(b[16:20], "big"), int.from_bytes(b[20:24], "big")
    if b[:2] == b"\xff\xd8":  # JPEG: walk the segments to the first start-of-frame marker
        i = 2
        while i + 9 < len(b):
            if b[i] != 0xFF:
                return None
            marker = b[i + 1]
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
                i += 2
                continue
            length = int.from_bytes(b[i + 2 : i + 4], "big")
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                return int.from_bytes(b[i + 7 : i + 9], "big"), int.from_bytes(b[i + 5 : i + 7], "big")
            i += 2 + length
    return None
