"""Resize uint8 images exactly like OpenCV's ``cv2.resize``: OpenCV where installed, an exact NumPy fallback.

The authors' loaders resize with OpenCV on uint8 (Ultralytics' ``load_image`` with ``INTER_LINEAR``, YOLOv5's
with ``INTER_AREA`` when shrinking), and detections depend on the exact input pixels, so the fallback
reproduces OpenCV's arithmetic bit for bit rather than approximating it. It follows the dispatch of
``cv::hal::resize`` (``modules/imgproc/src/resize.cpp``) on 8-bit images:

- ``scale = 1 / (dst / src)`` per axis, in double, as OpenCV computes it; the scale counts as an integer when
  it is within ``DBL_EPSILON`` of ``round(scale)``.
- ``INTER_LINEAR`` with both scales exactly 2 is done as ``INTER_AREA`` (``resizeAreaFast``).
- ``INTER_AREA`` with both scales ``>= 1`` (shrinking, or keeping one axis):

  - both scales integers: ``resizeAreaFast``, the mean of each ``ky x kx`` block. For 2x2 blocks its SIMD
    kernel rounds half up, ``(sum + 2) >> 2``; other blocks take ``saturate_cast(sum * (1.f / area))``,
    which rounds half to even in float32.
  - otherwise ``resizeArea_``: ``computeResizeAreaTab`` gives each output pixel its source taps with float32
    weights (partial cells at both ends); a horizontal pass accumulates ``src * alpha`` in float32 in tap
    order, a vertical pass ``beta * row`` in float32 in tap order, then ``saturate_cast`` (half to even).
- Everything else (``INTER_LINEAR``, and ``INTER_AREA`` that enlarges either axis) is OpenCV's fixed-point
  bilinear: 11-bit weights, a horizontal pass into int32, then the vertical pass of
  ``VResizeLinearVec_32s8u`` (``>> 4``, 16-bit ``mulhi``, rounding ``>> 2``), whose scalar tail OpenCV
  writes with the same arithmetic. ``INTER_AREA`` only changes where the taps sit and how they are weighted
  (``sx = floor(dx * scale)``, ``fx = (dx + 1) - (sx + 1) / scale`` wrapped to ``[0, 1)``).

IPP does not take part: OpenCV's IPP resize refuses 8-bit ``INTER_LINEAR`` and ``INTER_AREA`` (``ippSuper``)
unless inexact IPP is switched on. Checked bit-exact against opencv-python-headless 5.0 by
``tests/test_nn_resize.py``.
"""

from __future__ import annotations

import functools
import importlib
import sys
from numbers import Integral
from types import ModuleType

import numpy as np

from ..errors import InvalidArgumentError, MissingDependencyError

__all__ = ["BACKENDS", "INTERPOLATIONS", "opencv_available", "resize_u8"]

INTERPOLATIONS = ("linear", "area")
BACKENDS = ("auto", "opencv", "numpy")

_COEF_BITS = 11  # INTER_RESIZE_COEF_BITS
_COEF_ONE = 1 << _COEF_BITS
_DBL_EPSILON = sys.float_info.epsilon
_AREA_TAB_EPS = 1e-3  # computeResizeAreaTab drops partial cells thinner than this


@functools.cache
def _load_cv2() -> ModuleType | None:
    """The ``cv2`` module, or ``None`` where OpenCV is not installed (imported once, on first use)."""
    try:
        return importlib.import_module("cv2")
    except ImportError:
        return None


def opencv_available() -> bool:
    """Whether ``cv2`` can be imported (``resize_u8(backend="auto")`` then uses it)."""
    return _load_cv2() is not None


def resize_u8(
    image: np.ndarray, size: tuple[int, int], interpolation: str = "linear", backend: str = "auto"
) -> np.ndarray:
    """Resize uint8 ``[..., H, W]`` planes to ``size = (h, w)``, bit-identical to ``cv2.resize``.

    :param image: uint8 array ``[..., H, W]``; every leading index (channel, time step) is an independent plane.
    :param size: ``(h, w)`` of the result, both positive (note: ``cv2.resize`` takes ``(w, h)``).
    :param interpolation: ``"linear"`` (``cv2.INTER_LINEAR``) or ``"area"`` (``cv2.INTER_AREA``).
    :param backend: ``"auto"`` (OpenCV if importable, else NumPy), ``"opencv"`` or ``"numpy"``.
    :returns: uint8 ``[..., h, w]``, equal to ``cv2.resize(plane, (w, h), interpolation=...)`` for each plane;
        a new array even when the size does not change.
    :raises InvalidArgumentError: not a uint8 array of rank >= 2 with non-empty planes, a bad ``size``, or an
        unknown ``interpolation`` or ``backend``.
    :raises MissingDependencyError: ``backend="opencv"`` without OpenCV installed.
    """
    h, w = _check(image, size, interpolation, backend)
    if image.shape[-2:] == (h, w):
        return image.copy()  # cv::resize copies too; the caller may write to the result
    if backend == "numpy" or (backend == "auto" and not opencv_available()):
        return _resize_numpy(image, h, w, interpolation)
    cv2 = _load_cv2()
    if cv2 is None:
        raise MissingDependencyError(
            "resize_u8(backend='opencv') needs OpenCV: pip install opencv-python-headless "
            "(or use backend='numpy', which gives the same pixels)"
        )
    return _resize_opencv(cv2, image, h, w, interpolation)


def _check(image: np.ndarray, size: tuple[int, int], interpolation: str, backend: str) -> tuple[int, int]:
    if not isinstance(image, np.ndarray):
        raise InvalidArgumentError(f"resize_u8 expects a uint8 numpy array [..., H, W], got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise InvalidArgumentError(f"resize_u8 expects uint8 images, got dtype {image.dtype}")
    if image.ndim < 2 or image.shape[-1] < 1 or image.shape[-2] < 1:
        raise InvalidArgumentError(
            f"resize_u8 expects an array [..., H, W] with H, W >= 1, got shape {tuple(image.shape)}"
        )
    ok = isinstance(size, tuple | list) and len(size) == 2
    ok = ok and all(isinstance(v, Integral) and not isinstance(v, bool | np.bool_) and v > 0 for v in size)
    if not ok:
        raise InvalidArgumentError(f"size must be a (height, width) pair of positive ints, got {size!r}")
    if interpolation not in INTERPOLATIONS:
        raise InvalidArgumentError(f"interpolation must be one of {list(INTERPOLATIONS)}, got {interpolation!r}")
    if backend not in BACKENDS:
        raise InvalidArgumentError(f"backend must be one of {list(BACKENDS)}, got {backend!r}")
    return int(size[0]), int(size[1])


# ----------------------------------------------------------------------------------------------- OpenCV path


def _resize_opencv(cv2: ModuleType, image: np.ndarray, h: int, w: int, interpolation: str) -> np.ndarray:
    """One ``cv2.resize`` per 2-D plane, written straight into the result.

    Planes are contiguous views of ``image`` (no copy for a C-contiguous input), and ``dst=`` avoids a copy
    of each result. Grouping planes into HWC chunks of 3 or 4 channels gives the same pixels but needs a
    transpose copy in and out, which made it slower (3 x 750 x 1000 -> 480 x 640: 4.6 vs 2.6 ms for area,
    3.0 vs 0.3 ms for linear); chunks of 2 channels are not even exact: OpenCV's 2x2 ``resizeAreaFast``
    has no SIMD kernel for them and rounds half to even instead of half up.
    """
    flag = cv2.INTER_LINEAR if interpolation == "linear" else cv2.INTER_AREA
    planes = image.reshape(-1, *image.shape[-2:])  # a view unless the input's strides forbid it
    out = np.empty((planes.shape[0], h, w), np.uint8)
    for src, dst in zip(planes, out, strict=True):
        result = cv2.resize(src, (w, h), dst=dst, interpolation=flag)
        if result is not dst:  # cv2 reallocates when it cannot use dst; never seen for these shapes, but cheap
            dst[...] = result
    return out.reshape(*image.shape[:-2], h, w)


# ------------------------------------------------------------------------------------------------ NumPy path


def _scale(src: int, dst: int) -> tuple[float, int, bool]:
    """OpenCV's ``scale = 1 / (dst / src)`` in double, ``saturate_cast<int>(scale)``, and whether it is integral."""
    scale = 1.0 / (float(dst) / float(src))
    iscale = round(scale)  # cvRound: half to even, like Python's round on floats
    return scale, iscale, abs(scale - iscale) < _DBL_EPSILON


def _resize_numpy(image: np.ndarray, h: int, w: int, interpolation: str) -> np.ndarray:
    """OpenCV's 8-bit dispatch (``cv::hal::resize``), each branch reproduced in vectorised NumPy."""
    src_h, src_w = image.shape[-2:]
    scale_y, iscale_y, int_y = _scale(src_h, h)
    scale_x, iscale_x, int_x = _scale(src_w, w)
    area_fast = int_x and int_y
    if interpolation == "linear" and area_fast and iscale_x == 2 and iscale_y == 2:
        interpolation = "area"  # OpenCV: a 2x bilinear shrink is the 2x2 block mean
    if interpolation == "area" and scale_x >= 1 and scale_y >= 1:
        if area_fast:
            return _area_fast(image, iscale_y, iscale_x)
        return _area_general(image, h, w, scale_y, scale_x)
    return _bilinear(image, h, w, area_mode=interpolation == "area")


def _bilinear_taps(
    src: int, dst: int, area_mode: bool, clamp_weights: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Source index pairs and 11-bit weights along one axis of OpenCV's ``resizeGeneric_`` bilinear.

    ``clamp_weights``: OpenCV zeroes the fraction where the column index leaves the image, but only clamps
    the row indices (the row weights keep their fraction).
    """
    inv_scale = float(dst) / float(src)
    scale = 1.0 / inv_scale
    d = np.arange(dst, dtype=np.float64)
    if area_mode:
        i0 = np.floor(d * scale).astype(np.int64)
        frac = ((d + 1) - (i0 + 1) * inv_scale).astype(np.float32)  # computed in double, stored as float
        frac = np.where(frac <= 0, np.float32(0), frac - np.floor(frac))
    else:
        f = ((d + 0.5) * scale - 0.5).astype(np.float32)  # OpenCV: the position in double, stored as float
        i0 = np.floor(f).astype(np.int64)
        frac = f - i0.astype(np.float32)
    if clamp_weights:
        frac[(i0 < 0) | (i0 >= src - 1)] = 0
    one = np.float32(_COEF_ONE)
    # saturate_cast<short>(float): round half to even; the products are exact (x 2^11).
    w0 = np.rint((np.float32(1) - frac) * one).astype(np.int32)
    w1 = np.rint(frac * one).astype(np.int32)
    return np.clip(i0, 0, src - 1), np.clip(i0 + 1, 0, src - 1), w0, w1


def _bilinear(image: np.ndarray, h: int, w: int, area_mode: bool) -> np.ndarray:
    """OpenCV's fixed-point bilinear (``HResizeLinear`` + ``VResizeLinear<uchar, int, short>``)."""
    src_h, src_w = image.shape[-2:]
    y0, y1, wy0, wy1 = _bilinear_taps(src_h, h, area_mode, clamp_weights=False)
    x0, x1, wx0, wx1 = _bilinear_taps(src_w, w, area_mode, clamp_weights=True)
    # The horizontal pass only for the source rows that some output row reads (fewer when shrinking).
    # np.take keeps the results C-contiguous (fancy indexing would leave them transposed, and slow).
    rows, inverse = np.unique(np.concatenate([y0, y1]), return_inverse=True)
    src = np.take(image, rows, axis=-2)
    # int32 is OpenCV's buffer type: at most 255 * 2048; the >> 4 is the SIMD pass's first step.
    hor = np.take(src, x0, axis=-1).astype(np.int32)
    hor *= wx0
    right = np.take(src, x1, axis=-1).astype(np.int32)
    right *= wx1
    hor += right
    hor >>= 4
    # mulhi of two int16 is (a * b) >> 16; then the rounding >> 2. At most 255, so no saturation is needed.
    out = np.take(hor, inverse[:h], axis=-2)
    out *= wy0[:, None]
    out >>= 16
    bottom = np.take(hor, inverse[h:], axis=-2)
    bottom *= wy1[:, None]
    bottom >>= 16
    out += bottom
    out += 2
    out >>= 2
    return out.astype(np.uint8)


def _area_fast(image: np.ndarray, ky: int, kx: int) -> np.ndarray:
    """OpenCV's ``resizeAreaFast`` for integer factors: the mean of each ``ky x kx`` block (sizes divide exactly)."""
    *lead, src_h, src_w = image.shape
    if ky * kx <= 16:  # a handful of strided slices sums faster than a reshape over two strided axes
        total = np.zeros((*lead, src_h // ky, src_w // kx), np.int32)
        for i in range(ky):
            for j in range(kx):
                total += image[..., i::ky, j::kx]
    else:
        total = image.reshape(*lead, src_h // ky, ky, src_w // kx, kx).sum(axis=(-3, -1), dtype=np.int32)
    if ky == 2 and kx == 2:
        total += 2
        total >>= 2  # the SIMD kernel: a rounding shift, half up
        return total.astype(np.uint8)
    # The scalar loop: int sum times float(1 / area), then saturate_cast (cvRound: half to even).
    scaled = total.astype(np.float32)
    scaled *= np.float32(1) / np.float32(ky * kx)
    return np.rint(scaled).astype(np.uint8)  # a mean of uint8 stays within [0, 255]


def _area_tab(src: int, dst: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """``computeResizeAreaTab`` as padded ``[dst, taps]`` source indices and float32 weights.

    Each output pixel covers ``[dx * scale, dx * scale + scale)``: a partial cell on the left, whole cells,
    a partial cell on the right, in increasing source order (the order OpenCV accumulates them in). Unused
    slots get weight 0, which adds an exact 0 and so leaves the float32 sums unchanged.
    """
    fsx1 = np.arange(dst, dtype=np.float64) * scale
    fsx2 = fsx1 + scale
    cell = np.minimum(scale, src - fsx1)
    sx2 = np.minimum(np.floor(fsx2).astype(np.int64), src - 1)
    sx1 = np.minimum(np.ceil(fsx1).astype(np.int64), sx2)
    has_left = (sx1 - fsx1) > _AREA_TAB_EPS
    has_right = (fsx2 - sx2) > _AREA_TAB_EPS
    n_mid = np.maximum(sx2 - sx1, 0)
    mid = np.arange(int(n_mid.max(initial=0)))
    index = np.concatenate([(sx1 - 1)[:, None], sx1[:, None] + mid, sx2[:, None]], axis=1)
    alpha = np.concatenate(
        [
            np.where(has_left, (sx1 - fsx1) / cell, 0.0)[:, None],
            np.where(mid < n_mid[:, None], 1.0 / cell[:, None], 0.0),
            np.where(has_right, np.minimum(np.minimum(fsx2 - sx2, 1.0), cell) / cell, 0.0)[:, None],
        ],
        axis=1,
    ).astype(np.float32)  # OpenCV: each weight computed in double, stored as float
    return np.clip(index, 0, src - 1), alpha


def _area_general(image: np.ndarray, h: int, w: int, scale_y: float, scale_x: float) -> np.ndarray:
    """OpenCV's ``resizeArea_<uchar, float>`` (``ResizeArea_Invoker``) for non-integer shrink factors."""
    src_h, src_w = image.shape[-2:]
    x_index, x_alpha = _area_tab(src_w, w, scale_x)
    y_index, y_alpha = _area_tab(src_h, h, scale_y)
    # Horizontal pass over every source row: buf[dx] += S[si] * alpha, float32, in tap order.
    src = image.astype(np.float32)  # exact; converting once is cheaper than once per tap
    buf = np.take(src, x_index[:, 0], axis=-1)
    buf *= x_alpha[:, 0]
    for t in range(1, x_index.shape[1]):
        term = np.take(src, x_index[:, t], axis=-1)
        term *= x_alpha[:, t]
        buf += term
    # Vertical pass: sum = beta * buf for the first row, then sum += beta * buf, float32, in tap order.
    acc = np.take(buf, y_index[:, 0], axis=-2)
    acc *= y_alpha[:, 0, None]
    for t in range(1, y_index.shape[1]):
        term = np.take(buf, y_index[:, t], axis=-2)
        term *= y_alpha[:, t, None]
        acc += term
    np.rint(acc, out=acc)  # saturate_cast<uchar>(float): round half to even, then clamp
    np.clip(acc, 0, 255, out=acc)
    return acc.astype(np.uint8)
