"""Tests of dir_ros.image.decode against malformed and oversized frames (issue 9, items 3-4) and of
the bounded crop warp: sizes are read from PNG / JPEG headers before decoding, frames over
the limits are refused before any pixel is allocated, OpenCV errors are decode errors.
(The plain decoding tests live in test_predictor.py.)"""
from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np
import pytest

from dir_ros.image import decode as D
from dir_ros.common import geometry as geo


def _bgr(h: int = 40, w: int = 60) -> np.ndarray:
    """A deterministic BGR test image."""
    return np.random.default_rng(1).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _encode(ext: str, img: np.ndarray, *params: int) -> bytes:
    ok, buf = cv2.imencode(ext, img, list(params))
    assert ok
    return buf.tobytes()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(
        ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG signature + IHDR claiming width x height (8-bit grey), then an empty IDAT."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (D.PNG_SIGNATURE + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(b""))
            + _png_chunk(b"IEND", b""))


def _jpeg_claiming(width: int, height: int) -> bytes:
    """A real small JPEG whose SOF0 frame header is rewritten to claim width x height."""
    data = bytearray(_encode(".jpg", _bgr()))
    i = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, i + 5, height, width)
    return bytes(data)


@pytest.fixture
def no_imdecode(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if cv2.imdecode is reached (the refusal must come from the header)."""
    def refuse(*_: object) -> None:
        raise AssertionError("cv2.imdecode was called for a frame the header refuses")
    monkeypatch.setattr(cv2, "imdecode", refuse)


# --- sizes from headers ------------------------------------------------------------------

@pytest.mark.parametrize("ext, params", [
    (".png", ()), (".jpg", ()),
    (".jpg", (cv2.IMWRITE_JPEG_PROGRESSIVE, 1)),  # SOF2
    (".jpg", (cv2.IMWRITE_JPEG_OPTIMIZE, 1)),
])
def test_header_size_matches_the_image(ext: str, params: tuple[int, ...]) -> None:
    """The size read from the header is the encoded image's (baseline and progressive)."""
    data = _encode(ext, _bgr(37, 91), *params)
    fmt, w, h = D.compressed_size(data)
    assert (fmt, w, h) == ("png" if ext == ".png" else "jpeg", 91, 37)


def test_jpeg_size_skips_segments_before_the_frame_header() -> None:
    """APPn segments (EXIF, ICC: any length) before SOF are skipped by their length."""
    data = _encode(".jpg", _bgr(20, 30))
    app = b"\xff\xe1" + struct.pack(">H", 2 + 5000) + bytes(5000)  # a 5 kB APP1 segment
    assert D.jpeg_size(data[:2] + app + data[2:]) == (30, 20)


@pytest.mark.parametrize("data, kind", [
    (b"\xff\xd8\xff\xda\x00\x02", "jpeg_header"),  # scan before any frame header
    (b"\xff\xd8\xff\xe0\x00", "jpeg_header"),  # truncated in a segment length
    (D.PNG_SIGNATURE + b"\x00\x00", "png_header"),  # no IHDR
    (b"GIF89a....", "compressed_format"),
])
def test_broken_headers_are_decode_errors(data: bytes, kind: str) -> None:
    with pytest.raises(D.DecodeError) as info:
        D.decode_compressed(data, "jpeg")
    assert info.value.kind == kind


def test_jpeg_without_height_is_refused() -> None:
    """A SOF height of 0 (size given later by DNL) cannot be checked: refused."""
    with pytest.raises(D.DecodeError, match="DNL"):
        D.decode_compressed(_jpeg_claiming(100, 0), "jpeg")


# --- size bombs ----------------------------------------------------------------------------

def test_jpeg_header_claiming_60000_is_refused_before_decoding(no_imdecode: None) -> None:
    """The issue's JPEG of 60000x60000: refused from its header (OpenCV used to raise)."""
    with pytest.raises(D.ImageTooLarge, match="60000x60000") as info:
        D.decode_compressed(_jpeg_claiming(60000, 60000), "jpeg")
    assert info.value.kind == "too_long"
    assert isinstance(info.value, ValueError)  # callers catching ValueError keep working


def test_png_bomb_is_refused_before_decoding(no_imdecode: None) -> None:
    """A PNG header of 12000x12000 (144 MP > the 16.8 MP default): refused, nothing decoded."""
    with pytest.raises(D.ImageTooLarge, match=r"12000x12000 has 144000000 pixels") as info:
        D.decode_compressed(_png_header_only(12000, 12000), "png")
    assert info.value.kind == "too_large"


def test_real_png_bomb_is_refused_quickly() -> None:
    """A real 20000x20000 grey PNG (a few hundred kB of zlib zeros; 1.2 GB once decoded to
    BGR) is refused without decoding."""
    width = height = 20000
    comp = zlib.compressobj(9)
    row = bytes(width + 1)  # filter byte + pixels
    idat = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    data = (D.PNG_SIGNATURE + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0,
                                                               0, 0))
            + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b""))
    assert len(data) < 1_000_000
    with pytest.raises(D.ImageTooLarge):
        D.decode_compressed(data, "png")


def test_max_pixels_is_a_parameter() -> None:
    """A frame at the limit decodes, one pixel more is refused (raw and compressed)."""
    img = _bgr(10, 20)
    raw = cv2.cvtColor(img, cv2.COLOR_BGR2RGB).tobytes()
    assert D.decode_image(raw, 20, 10, "rgb8", max_pixels=200).shape == (10, 20, 3)
    with pytest.raises(D.ImageTooLarge, match="max_image_pixels 199"):
        D.decode_image(raw, 20, 10, "rgb8", max_pixels=199)
    png = _encode(".png", img)
    assert D.decode_compressed(png, "png", max_pixels=200).shape == (10, 20, 3)
    with pytest.raises(D.ImageTooLarge):
        D.decode_compressed(png, "png", max_pixels=199)


def test_raw_size_claims_are_checked_before_the_buffer() -> None:
    """A raw header claiming 8000x8000 with 10 bytes of data is refused as too large (the
    reason a user needs), and a 20000x1 strip for its side."""
    with pytest.raises(D.ImageTooLarge, match="8000x8000") as info:
        D.decode_image(b"\0" * 10, 8000, 8000, "rgb8")
    assert info.value.kind == "too_large"
    with pytest.raises(D.ImageTooLarge, match="side over 16384") as info:
        D.decode_image(b"\0" * 20000, 20000, 1, "mono8")
    assert info.value.kind == "too_long"


# --- truncation, garbage, OpenCV errors ---------------------------------------------------

def test_truncated_jpeg_is_refused() -> None:
    """OpenCV decodes a cut JPEG as grey pixels; the missing end-of-image marker refuses it."""
    data = _encode(".jpg", _bgr(64, 64))
    with pytest.raises(D.DecodeError, match="truncated") as info:
        D.decode_compressed(data[: len(data) // 2], "jpeg")
    assert info.value.kind == "compressed_truncated"
    # padding after the end-of-image marker is fine
    assert D.decode_compressed(data + bytes(100), "jpeg").shape == (64, 64, 3)


def test_garbage_after_a_valid_header_is_a_decode_error() -> None:
    """A JPEG header followed by noise (with an end marker): cv2.imdecode gives None."""
    head = _encode(".jpg", _bgr(16, 16))
    sos = head.index(b"\xff\xda")
    noise = np.random.default_rng(3).integers(0, 255, 300, dtype=np.uint8).tobytes()
    noise = noise.replace(b"\xff", b"\x00")
    with pytest.raises(D.DecodeError) as info:
        D.decode_compressed(head[:sos] + b"\xff\xda\x00\x02" + noise + D.JPEG_EOI, "jpeg")
    assert info.value.kind in ("compressed_undecodable", "compressed_header")


def test_opencv_errors_become_decode_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    """A cv2.error inside decoding is a DecodeError (kind 'opencv'), not an escaping error
    that the node would count as an inference error."""
    def cv_fails(*_: object) -> None:
        raise cv2.error("OpenCV(4.11.0) imgcodecs: error: (-215:Assertion failed) "
                        "validateInputImageSize")
    png = _encode(".png", _bgr())
    monkeypatch.setattr(cv2, "imdecode", cv_fails)
    with pytest.raises(D.DecodeError, match="validateInputImageSize") as info:
        D.decode_compressed(png, "png")
    assert info.value.kind == "opencv"
    monkeypatch.setattr(cv2, "cvtColor", cv_fails)
    with pytest.raises(D.DecodeError) as info:
        D.decode_image(b"\0" * 300, 10, 10, "bgr8")
    assert info.value.kind == "opencv"


@pytest.mark.parametrize("call, kind", [
    (lambda: D.decode_image(b"\0" * 100, 5, 5, "yuv422"), "encoding"),
    (lambda: D.decode_image(b"", 0, 5, "rgb8"), "empty_size"),
    (lambda: D.decode_image(b"\0" * 3000, 10, 10, "bgr8", 10), "step"),
    (lambda: D.decode_image(b"\0" * 10, 10, 10, "bgr8"), "short_buffer"),
    (lambda: D.decode_compressed(b"", "png"), "compressed_empty"),
    (lambda: D.decode_compressed(b"\x89PNG", "png; compressedDepth"), "compressed_depth"),
    (lambda: D.decode_compressed(b"junk", "jpeg"), "compressed_format"),
])
def test_every_decode_error_has_a_kind(call: object, kind: str) -> None:
    """Each class of problem has its own kind (the node counts and rate-limits logs by it)."""
    with pytest.raises(D.DecodeError) as info:
        call()  # type: ignore[operator]
    assert info.value.kind == kind


# --- the crop warp is bounded --------------------------------------------------------------

def _warp_sizes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """Record the dsize of every cv2.warpAffine call."""
    sizes: list[tuple[int, int]] = []
    real = cv2.warpAffine

    def spy(src: np.ndarray, m: np.ndarray, dsize: tuple[int, int], *a: object,
            **kw: object) -> np.ndarray:
        sizes.append(tuple(dsize))
        return real(src, m, dsize, *a, **kw)
    monkeypatch.setattr(cv2, "warpAffine", spy)
    return sizes


def test_warp_of_a_huge_box_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """The full-frame box of a 16384x64 strip spans 16384 px: the intermediate warp stays at
    MAX_WARP_SIDE_PX (it was 16384^2 x 3 = 805 MB; a 20000x1 image made 1.2 GB)."""
    sizes = _warp_sizes(monkeypatch)
    strip = np.full((64, 16384, 3), 200, np.uint8)
    out = geo.warp_crop(strip, geo.full_frame_box(16384, 64), 256)
    assert out.shape == (256, 256, 3)
    assert sizes and max(max(s) for s in sizes) <= geo.MAX_WARP_SIDE_PX
    # the strip lands in the middle rows, the rest is border
    assert out[:120].max() == 0 and out[136:].max() == 0 and out[120:136].max() > 0


def test_warp_below_the_cap_is_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 4K frame's full-frame crop (3840 px) keeps its even-multiple warp (3584 px)."""
    sizes = _warp_sizes(monkeypatch)
    img = np.zeros((2160, 3840, 3), np.uint8)
    geo.warp_crop(img, geo.full_frame_box(3840, 2160), 256)
    assert sizes == [(3584, 3584)]


# --- CameraInfo intrinsics ------------------------------------------------------------------

GOOD_K = [500.0, 0.0, 319.5, 0.0, 500.0, 239.5, 0.0, 0.0, 1.0]


@pytest.mark.parametrize("index, value, words", [
    (2, float("nan"), "non-finite entries (cx)"),
    (5, float("inf"), "non-finite entries (cy)"),
    (0, float("-inf"), "non-finite entries (fx)"),
    (0, 0.0, "fx, fy must be > 0"),
    (4, -500.0, "fx, fy must be > 0"),
])
def test_intrinsics_problem_names_the_entry(index: int, value: float, words: str) -> None:
    k = list(GOOD_K)
    k[index] = value
    assert words in (geo.intrinsics_problem(k) or "")


def test_intrinsics_problem_accepts_a_calibrated_k() -> None:
    assert geo.intrinsics_problem(GOOD_K) is None
    assert "all zeros" in geo.intrinsics_problem([0.0] * 9)
    assert "9" in geo.intrinsics_problem([1.0] * 4)


# --- no copies ------------------------------------------------------------------------------

def test_raw_decode_reads_the_message_buffer_in_place() -> None:
    """rgb8 with packed rows is a view on the message's buffer (an rclpy Image holds an
    array.array); bgr8, packed or padded, is converted straight from it: the result is the
    only new pixel buffer, and it holds the right pixels."""
    import array

    rgb = np.random.default_rng(2).integers(0, 256, (6, 5, 3), dtype=np.uint8)
    data = array.array("B", rgb.tobytes())
    out = D.decode_image(data, 5, 6, "rgb8")
    assert np.shares_memory(out, np.frombuffer(data, np.uint8)) and np.array_equal(out, rgb)
    pad = 7
    padded = np.zeros((6, 5 * 3 + pad), np.uint8)
    padded[:, :15] = rgb[..., ::-1].reshape(6, 15)
    for buf, step in ((array.array("B", rgb[..., ::-1].tobytes()), 15),
                      (array.array("B", padded.tobytes()), 15 + pad)):
        out = D.decode_image(buf, 5, 6, "bgr8", step)
        assert not np.shares_memory(out, np.frombuffer(buf, np.uint8))
        assert out.flags.c_contiguous and np.array_equal(out, rgb)
