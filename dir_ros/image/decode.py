"""Image decoding: sensor_msgs/Image and CompressedImage buffers -> RGB uint8 arrays.

The node and the bag tools decode through decode_image_msg; no ROS imports (duck-typed
messages: rclpy, rosbags or any object with the same fields).
"""
from __future__ import annotations

import struct
from typing import Any, Optional, Sequence, Union

import numpy as np

# Decoded-pixel bound by default (the node's `max_image_pixels`): 4096 x 4096 = 16.8 MP
# passes 4K UHD (8.3 MP) and 12 MP photos and refuses the 64 MP and 400 MP frames that took
# the node to 190 MB resident and 2.8 GB.
DEFAULT_MAX_IMAGE_PIXELS = 4096 * 4096
# Largest value max_image_pixels may take: OpenCV's own imdecode ceiling
# (OPENCV_IO_MAX_IMAGE_PIXELS defaults to 2^30).
MAX_IMAGE_PIXELS_LIMIT = 1 << 30
# Longest image side accepted whatever the pixel count: OpenCV's warpAffine (remap) asserts
# source and destination sides < SHRT_MAX = 32767 (checked with OpenCV 4.11), and a 20000x1
# strip is a crop bomb (its square crop spans 20000 px). 16384 stays well below SHRT_MAX.
MAX_IMAGE_SIDE_PX = 16384
# Trailing bytes searched for the JPEG end-of-image marker: encoders may pad after it; a
# truncated stream has none (entropy-coded data cannot contain FF D9).
JPEG_EOI_SEARCH_BYTES = 1024
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SOI = b"\xff\xd8"
JPEG_EOI = b"\xff\xd9"
# JPEG start-of-frame markers (SOF0-SOF15 without DHT C4, JPG C8, DAC CC): they carry the size.
JPEG_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# JPEG markers without a length field: TEM, RST0-7, SOI.
JPEG_STANDALONE_MARKERS = frozenset({0x01, *range(0xD0, 0xD9)})


class DecodeError(ValueError):
    """A frame that cannot be decoded; `kind` names the class of problem (a short stable
    word) so callers can count and rate-limit logs per kind."""

    def __init__(self, message: str, kind: str = "undecodable") -> None:
        super().__init__(message)  # (a default kind keeps the exception picklable)
        self.kind = kind


class ImageTooLarge(DecodeError):
    """A frame over the pixel limit (kind 'too_large') or the side limit (kind 'too_long'),
    refused before any pixel is allocated."""


def check_image_size(width: int, height: int, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
                     what: str = "image") -> None:
    """Raise ImageTooLarge when a side exceeds MAX_IMAGE_SIDE_PX or width x height exceeds
    max_pixels (decoding it would allocate without bound)."""
    if max(width, height) > MAX_IMAGE_SIDE_PX:
        raise ImageTooLarge(f"{what} {width}x{height} has a side over {MAX_IMAGE_SIDE_PX} px: "
                            f"refused", "too_long")
    if width * height > max_pixels:
        raise ImageTooLarge(f"{what} {width}x{height} has {width * height} pixels, more than "
                            f"max_image_pixels {max_pixels}: refused", "too_large")


def png_size(buf: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk (signature, length, 'IHDR', width, height)."""
    if len(buf) < 24 or buf[12:16] != b"IHDR":
        raise DecodeError(f"PNG stream of {len(buf)} bytes has no IHDR header", "png_header")
    width, height = struct.unpack(">II", buf[16:24])
    return width, height


def jpeg_size(buf: bytes) -> tuple[int, int]:
    """(width, height) from a JPEG's first start-of-frame segment, walking the marker
    segments from SOI (each FF xx + 16-bit length) without decoding anything."""
    i, n = 2, len(buf)
    while i < n:
        if buf[i] != 0xFF:
            raise DecodeError(f"JPEG stream: no marker at byte {i}", "jpeg_header")
        while i < n and buf[i] == 0xFF:  # fill bytes
            i += 1
        if i >= n:
            break
        marker = buf[i]
        i += 1
        if marker in JPEG_STANDALONE_MARKERS:
            continue
        if marker in (0xD9, 0xDA):  # EOI / start of scan before any frame header
            raise DecodeError("JPEG stream has no frame header before its scan", "jpeg_header")
        if i + 2 > n:
            break
        (length,) = struct.unpack(">H", buf[i:i + 2])
        if marker in JPEG_SOF_MARKERS:
            if i + 7 > n:
                break
            height, width = struct.unpack(">HH", buf[i + 3:i + 7])
            if height == 0:  # the height would come later in a DNL segment
                raise DecodeError("JPEG frame header without a height (DNL) is not supported",
                                  "jpeg_header")
            return width, height
        if length < 2:
            raise DecodeError(f"JPEG segment length {length} at byte {i}", "jpeg_header")
        i += length
    raise DecodeError(f"JPEG stream of {n} bytes is truncated before its frame header",
                      "jpeg_header")


def compressed_size(buf: bytes) -> tuple[str, int, int]:
    """(format 'png' | 'jpeg', width, height) read from the stream's header, before decoding;
    DecodeError for other or broken streams (image_transport's compressed is jpeg or png)."""
    if buf.startswith(PNG_SIGNATURE):
        return ("png", *png_size(buf))
    if buf.startswith(JPEG_SOI):
        return ("jpeg", *jpeg_size(buf))
    raise DecodeError(f"not a JPEG or PNG stream (starts with {buf[:8].hex()})",
                      "compressed_format")

# Raw encodings accepted: channels and the OpenCV conversion to RGB (None = already RGB).
RAW_ENCODINGS: dict[str, tuple[int, Optional[str]]] = {
    "rgb8": (3, None),
    "bgr8": (3, "COLOR_BGR2RGB"),
    "rgba8": (4, "COLOR_RGBA2RGB"),
    "bgra8": (4, "COLOR_BGRA2RGB"),
    "mono8": (1, "COLOR_GRAY2RGB"),
    "8UC3": (3, "COLOR_BGR2RGB"),  # OpenCV type names: BGR by OpenCV convention
    "8UC1": (1, "COLOR_GRAY2RGB"),
}



def _as_bytes_array(data: Any) -> np.ndarray:
    """bytes / bytearray / memoryview / array.array / ndarray / list of ints -> 1-D uint8 view."""
    if isinstance(data, np.ndarray):
        return np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    if isinstance(data, (list, tuple)):
        return np.asarray(data, dtype=np.uint8)
    return np.frombuffer(data, dtype=np.uint8)


def decode_image(data: Union[bytes, bytearray, memoryview, np.ndarray, Sequence[int]], width: int,
                 height: int, encoding: str, step: int = 0,
                 max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> np.ndarray:
    """A raw sensor_msgs/Image buffer -> RGB uint8 (H,W,3); honours row padding (`step`).

    Raises DecodeError (a ValueError) naming encoding and sizes for unsupported encodings,
    short buffers and frames over max_pixels (checked before anything is allocated).
    """
    import cv2

    if encoding not in RAW_ENCODINGS:
        raise DecodeError(f"unsupported image encoding '{encoding}' "
                          f"(supported: {', '.join(RAW_ENCODINGS)})", "encoding")
    channels, conversion = RAW_ENCODINGS[encoding]
    width, height = int(width), int(height)
    if width <= 0 or height <= 0:
        raise DecodeError(f"image '{encoding}' has an empty size {width}x{height}", "empty_size")
    check_image_size(width, height, max_pixels, f"image '{encoding}'")
    row = width * channels
    step = int(step) or row
    if step < row:
        raise DecodeError(f"image '{encoding}' {width}x{height}: step {step} < width*channels "
                          f"{row}", "step")
    buf = _as_bytes_array(data)
    needed = step * (height - 1) + row
    if buf.size < needed:
        raise DecodeError(f"image '{encoding}' {width}x{height} step {step} needs at least "
                          f"{needed} bytes, got {buf.size}", "short_buffer")
    # A view on the message's buffer (rows `step` bytes apart): no copy of the pixels.
    rows = np.lib.stride_tricks.as_strided(buf, shape=(height, row), strides=(step, 1))
    img = rows.reshape(height, width, channels)
    if conversion is None:  # rgb8: the view itself when rows are packed (a copy when padded)
        return np.ascontiguousarray(img)
    # OpenCV reads padded rows in place (its row step): the conversion is the only copy
    src = img[..., 0] if channels == 1 else img
    try:
        return cv2.cvtColor(src, getattr(cv2, conversion))
    except cv2.error as e:  # OpenCV's own checks: a decode error, not an inference error
        raise DecodeError(f"OpenCV cannot convert image '{encoding}' {width}x{height}: "
                          f"{_cv_reason(e)}", "opencv") from None


def decode_compressed(data: Union[bytes, bytearray, memoryview, np.ndarray, Sequence[int]],
                      fmt: str = "", max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> np.ndarray:
    """A sensor_msgs/CompressedImage buffer (jpeg / png) -> RGB uint8 (H,W,3).

    The size is read from the PNG / JPEG header and checked against max_pixels before
    decoding (a 389 KB PNG can hold 20000x20000 pixels); a JPEG without its end-of-image
    marker is refused as truncated (OpenCV would fill the rest with grey). DecodeError
    (a ValueError) names what is wrong.
    """
    import cv2

    if "compresseddepth" in fmt.lower():
        raise DecodeError(f"compressed depth images are not supported (format '{fmt}')",
                          "compressed_depth")
    buf = _as_bytes_array(data)
    if buf.size == 0:
        raise DecodeError(f"compressed image (format '{fmt}') is empty", "compressed_empty")
    what = f"compressed image (format '{fmt}', {buf.size} bytes)"
    raw = buf.tobytes()  # a copy of the (small) compressed stream for the header walk
    try:
        kind, width, height = compressed_size(raw)
    except DecodeError as e:
        raise DecodeError(f"cannot decode {what}: {e}", e.kind) from None
    if width <= 0 or height <= 0:
        raise DecodeError(f"{what} has an empty size {width}x{height}", "empty_size")
    check_image_size(width, height, max_pixels, what)
    if kind == "jpeg" and JPEG_EOI not in raw[-JPEG_EOI_SEARCH_BYTES:]:
        raise DecodeError(f"{what} is truncated: no JPEG end-of-image marker",
                          "compressed_truncated")
    try:
        img = cv2.imdecode(buf, cv2.IMREAD_COLOR)  # BGR, alpha dropped, grey expanded
    except cv2.error as e:  # OpenCV's own checks: a decode error, not an inference error
        raise DecodeError(f"OpenCV cannot decode {what}: {_cv_reason(e)}", "opencv") from None
    if img is None:
        raise DecodeError(f"cannot decode {what}", "compressed_undecodable")
    if img.shape[:2] != (height, width):  # the header was the only size check
        raise DecodeError(f"{what}: decoded {img.shape[1]}x{img.shape[0]}, header said "
                          f"{width}x{height}", "compressed_header")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _cv_reason(error: Exception) -> str:
    """The one-line reason of a cv2.error (its text spans several lines)."""
    lines = [ln.strip() for ln in str(error).splitlines() if ln.strip()]
    return lines[-1] if lines else type(error).__name__


def decode_image_msg(msg: Any, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> np.ndarray:
    """A sensor_msgs/Image or CompressedImage (rclpy, rosbags or any object with those
    fields) -> RGB uint8 (H,W,3); DecodeError (a ValueError) names what is wrong, frames
    over max_pixels are refused before decoding. The node and the bag tools decode here."""
    if hasattr(msg, "format"):  # CompressedImage
        return decode_compressed(msg.data, msg.format, max_pixels)
    if getattr(msg, "is_bigendian", 0) and msg.encoding not in RAW_ENCODINGS:
        raise DecodeError(f"big-endian image encoding '{msg.encoding}' is not supported",
                          "encoding")
    return decode_image(msg.data, msg.width, msg.height, msg.encoding, msg.step, max_pixels)
