"""Exposure: the gain that brightens a dim frame before any hand model sees it (the palm
detector finds no hand on dim photos)."""
from __future__ import annotations

import cv2
import numpy as np

# --- exposure ------------------------------------------------------------------------------
# A dim frame is brightened (one gain on every channel) before any model sees it. The palm
# detector finds no hand on the three photos dimmed to 0.3x (luma 99th percentile 69-70),
# and the whole front end none either. Brought up to a 99th percentile of 240, the 7 photos
# (shared/images, shared/samples) dimmed to 0.3/0.12/0.05x gave 39 of their 42 hands (the
# front end with recovery; 37 at 200, 32 at 150); undimmed, their 99th percentiles are
# 188-245 and they are left alone. The gain is full below EXPOSURE_FULL_BELOW, 1 above
# EXPOSURE_NONE_ABOVE and blends linearly between, so a stream near the limit does not
# flicker between two exposures.
EXPOSURE_TARGET_P99 = 240.0
EXPOSURE_FULL_BELOW = 120.0
EXPOSURE_NONE_ABOVE = 160.0
# Largest gain: a 0.05x frame (99th percentile about 11) needs 22; above 16, JPEG and
# sensor noise dominate what is left of an 8-bit image.
MAX_EXPOSURE_GAIN = 16.0
# The percentile is taken on every EXPOSURE_STRIDE-th pixel of every EXPOSURE_STRIDE-th row:
# a 640x480 frame still gives 19,200 samples, in well under a millisecond.
EXPOSURE_STRIDE = 4
# Which percentile of the luma (OpenCV's ITU-R BT.601 grey) the exposure rule reads: a
# bright highlight, not the mean, so that a dark background with a lit hand is left alone.
EXPOSURE_PERCENTILE = 99.0


def exposure_gain(image: np.ndarray) -> float:
    """Gain (>= 1) for image (H,W,3) uint8 RGB: full (its luma EXPOSURE_PERCENTILE brought to
    EXPOSURE_TARGET_P99, at most MAX_EXPOSURE_GAIN) below EXPOSURE_FULL_BELOW, 1 above
    EXPOSURE_NONE_ABOVE, blended linearly between."""
    luma = cv2.cvtColor(np.ascontiguousarray(image[::EXPOSURE_STRIDE, ::EXPOSURE_STRIDE]),
                        cv2.COLOR_RGB2GRAY)
    # the percentile from the 256-bin histogram (uint8 levels): no sort
    cumulative = np.cumsum(np.bincount(luma.ravel(), minlength=256))
    level = float(np.searchsorted(cumulative, EXPOSURE_PERCENTILE / 100.0 * cumulative[-1]))
    if level >= EXPOSURE_NONE_ABOVE:
        return 1.0
    full = min(EXPOSURE_TARGET_P99 / max(level, 1.0), MAX_EXPOSURE_GAIN)
    weight = min((EXPOSURE_NONE_ABOVE - level) / (EXPOSURE_NONE_ABOVE - EXPOSURE_FULL_BELOW), 1.0)
    return 1.0 + weight * (full - 1.0)
