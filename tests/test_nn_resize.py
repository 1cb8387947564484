"""resize_u8: the NumPy fallback must give OpenCV's pixels bit for bit, for INTER_LINEAR and INTER_AREA."""

import itertools

import numpy as np
import pytest

from snn_det_zoo.errors import InvalidArgumentError, MissingDependencyError
from snn_det_zoo.nn import resize as resize_module
from snn_det_zoo.nn.resize import opencv_available, resize_u8

try:
    import cv2
except ImportError:  # the comparisons skip; the properties below still run
    cv2 = None

needs_cv2 = pytest.mark.skipif(cv2 is None, reason="cv2 (opencv-python-headless) is not installed: nothing to compare")
FLAGS = {"linear": "INTER_LINEAR", "area": "INTER_AREA"}
INTERPOLATIONS = tuple(FLAGS)


def yolo_size(h0, w0, long_side=640):
    """YOLOv5's load_image: r = long_side / max(h0, w0), then (int(w0 * r), int(h0 * r))."""
    r = long_side / max(h0, w0)
    return int(h0 * r), int(w0 * r)


def reference(planes, size, interpolation):
    """cv2.resize applied to every 2-D plane of [..., H, W]."""
    flag = getattr(cv2, FLAGS[interpolation])
    flat = planes.reshape(-1, *planes.shape[-2:])
    out = [cv2.resize(np.ascontiguousarray(p), (size[1], size[0]), interpolation=flag) for p in flat]
    return np.stack(out).reshape(*planes.shape[:-2], *size)


def images(shape, seed):
    """A uniform random image and one with only four levels (many exact rounding ties)."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, shape, dtype=np.uint8), (rng.integers(0, 4, shape) * 85).astype(np.uint8)]


def assert_exact(src_hw, dst_hw, interpolation, seed=0):
    for img in images(src_hw, seed):
        got = resize_u8(img, dst_hw, interpolation, backend="numpy")
        ref = reference(img, dst_hw, interpolation)
        diff = np.abs(got.astype(np.int16) - ref)
        assert got.shape == ref.shape and not diff.any(), (
            f"{interpolation} {src_hw} -> {dst_hw}: {int((diff > 0).sum())} pixels differ, by up to {diff.max()}"
        )


# Sources of YOLOv5's load_image (long side to 640 or 320) and of SpikeYOLO's Gen1 frames.
YOLO_SOURCES = [(960, 1280), (750, 1000), (1080, 1920), (533, 800), (480, 640), (640, 480), (427, 640),
                (375, 500), (333, 500), (481, 641), (612, 612), (500, 353), (1200, 1600), (240, 304)]
CASES = [
    *((src, yolo_size(*src, side)) for src, side in itertools.product(YOLO_SOURCES, (640, 320))),
    ((240, 304), (253, 320)), ((240, 304), (320, 320)),  # SpikeYOLO and EMS-YOLO Gen1 frames
    ((64, 48), (32, 24)), ((96, 96), (32, 32)), ((100, 120), (25, 30)), ((90, 60), (30, 12)),  # integer shrink
    ((64, 64), (64, 32)), ((64, 64), (32, 64)), ((60, 60), (20, 60)),  # one axis kept
    ((1000, 1000), (97, 333)), ((999, 998), (3, 2)), ((700, 500), (10, 7)), ((300, 300), (1, 1)),  # factors > 2
    ((64, 64), (128, 128)), ((20, 30), (41, 95)), ((7, 9), (64, 33)), ((2, 2), (9, 9)),  # enlarging
    ((50, 300), (200, 37)), ((300, 50), (37, 200)), ((40, 40), (80, 20)),  # one axis up, the other down
    ((1, 1), (7, 9)), ((1, 300), (5, 3)), ((300, 1), (3, 5)), ((1, 17), (1, 5)), ((17, 1), (40, 1)),  # 1 pixel
    ((5, 3), (1, 1)), ((2, 7), (1, 3)), ((13, 9), (9, 13)),
]


@needs_cv2
@pytest.mark.parametrize("interpolation", INTERPOLATIONS)
@pytest.mark.parametrize(("src_hw", "dst_hw"), CASES, ids=[f"{s[0]}x{s[1]}-{d[0]}x{d[1]}" for s, d in CASES])
def test_numpy_matches_opencv(src_hw, dst_hw, interpolation):
    assert_exact(src_hw, dst_hw, interpolation)


@needs_cv2
@pytest.mark.parametrize("interpolation", INTERPOLATIONS)
def test_numpy_matches_opencv_on_random_sizes(interpolation):
    """Seeded sizes of every kind: arbitrary, integer factors (the area-fast path), tiny."""
    rng = np.random.default_rng(123)
    for i in range(150):
        src = tuple(int(v) for v in rng.integers(1, 200, 2))
        if i % 3 == 0:
            dst = tuple(int(v) for v in rng.integers(1, 200, 2))
        elif i % 3 == 1:
            k = rng.integers(1, 6, 2)
            dst = (max(1, src[0] // int(k[0])), max(1, src[1] // int(k[1])))
            src = (dst[0] * int(k[0]), dst[1] * int(k[1]))
        else:
            dst = tuple(int(v) for v in rng.integers(1, 12, 2))
        if src != dst:
            assert_exact(src, dst, interpolation, seed=i)


@needs_cv2
@pytest.mark.parametrize("interpolation", INTERPOLATIONS)
@pytest.mark.parametrize("planes", [1, 2, 3, 4, 5, 8, 15])
def test_leading_planes_are_independent(planes, interpolation):
    rng = np.random.default_rng(planes)
    img = rng.integers(0, 256, (planes, 60, 80), dtype=np.uint8)
    for size in [(30, 40), (37, 51), (90, 101)]:  # 2x2 area-fast, general shrink, enlarge
        ref = reference(img, size, interpolation)
        for backend in ("numpy", "opencv", "auto"):
            got = resize_u8(img, size, interpolation, backend)
            assert got.shape == (planes, *size) and got.dtype == np.uint8
            np.testing.assert_array_equal(got, ref)
    frames = rng.integers(0, 256, (2, 3, 33, 47), dtype=np.uint8)  # [T, C, H, W]
    for backend in ("numpy", "opencv"):
        np.testing.assert_array_equal(resize_u8(frames, (20, 21), interpolation, backend),
                                      reference(frames, (20, 21), interpolation))


@needs_cv2
@pytest.mark.parametrize("interpolation", INTERPOLATIONS)
def test_per_plane_equals_opencv_on_hwc_images(interpolation):
    """Resizing planes one by one gives what cv2.resize gives an HWC image of 1, 3 or 4 channels.

    (Not of 2 channels: OpenCV's 2x2 area-fast kernel then rounds half to even; resize_u8 never groups.)
    """
    flag = getattr(cv2, FLAGS[interpolation])
    rng = np.random.default_rng(7)
    for channels, size in itertools.product((1, 3, 4), [(64, 80), (40, 53), (200, 170)]):
        hwc = rng.integers(0, 256, (128, 160, channels), dtype=np.uint8)
        ref = cv2.resize(hwc, (size[1], size[0]), interpolation=flag).reshape(*size, channels)
        for backend in ("numpy", "opencv"):
            got = resize_u8(np.ascontiguousarray(hwc.transpose(2, 0, 1)), size, interpolation, backend)
            np.testing.assert_array_equal(got.transpose(1, 2, 0), ref)


@needs_cv2
def test_non_contiguous_input():
    rng = np.random.default_rng(3)
    base = rng.integers(0, 256, (3, 61, 90), dtype=np.uint8)
    for view in (base[..., ::2], base[:, ::3], base.transpose(0, 2, 1), np.asfortranarray(base)):
        for interpolation, backend in itertools.product(INTERPOLATIONS, ("numpy", "opencv")):
            np.testing.assert_array_equal(resize_u8(view, (20, 31), interpolation, backend),
                                          reference(view, (20, 31), interpolation))


# ------------------------------------------------------------------------------- no OpenCV needed below


@pytest.mark.parametrize("interpolation", INTERPOLATIONS)
def test_constant_stays_constant_and_ramp_stays_monotone(interpolation):
    sizes = [(1, 1), (1, 9), (7, 1), (13, 9), (32, 48), (64, 64), (100, 37)]
    x = np.arange(64)
    ramp = np.broadcast_to((x * 255 // 63).astype(np.uint8), (64, 64))
    for value in (0, 1, 127, 254, 255):
        flat = np.full((2, 64, 64), value, np.uint8)
        for size in sizes:
            out = resize_u8(flat, size, interpolation, backend="numpy")
            assert out.shape == (2, *size) and out.dtype == np.uint8 and (out == value).all()
    for size in sizes:
        for transposed in (False, True):
            img = np.ascontiguousarray(ramp.T if transposed else ramp)
            out = resize_u8(img, size, interpolation, backend="numpy").astype(int)
            along = out.T if transposed else out  # the ramp now runs along axis 1
            assert (np.diff(along, axis=1) >= 0).all()
            # Across the ramp OpenCV itself is off by one here and there (fixed-point truncation), never more.
            assert np.ptp(along, axis=0).max() <= 1


def test_same_size_returns_a_copy():
    img = np.arange(12, dtype=np.uint8).reshape(3, 4)
    for backend in ("numpy", "auto"):
        out = resize_u8(img, (3, 4), backend=backend)
        np.testing.assert_array_equal(out, img)
        assert not np.shares_memory(out, img)


# cv2.resize(RESIZE_SRC, (13, 9), interpolation=cv2.INTER_LINEAR), recorded with opencv-python-headless 5.0.
RESIZE_SRC = [
    [0, 0, 255, 127, 0, 127, 127, 0],
    [127, 0, 127, 127, 127, 127, 127, 255],
    [127, 127, 127, 127, 0, 255, 127, 127],
    [255, 127, 127, 255, 0, 127, 127, 0],
    [127, 255, 0, 127, 127, 127, 127, 0],
    [255, 127, 127, 255, 127, 255, 255, 0],
]
RESIZE_CV2 = [
    [0, 0, 10, 167, 220, 142, 63, 14, 93, 127, 127, 54, 0],
    [64, 37, 7, 125, 174, 134, 95, 71, 110, 127, 127, 127, 128],
    [127, 82, 25, 90, 127, 127, 116, 111, 137, 141, 128, 188, 234],
    [127, 118, 107, 120, 127, 127, 74, 45, 176, 197, 131, 139, 148],
    [191, 164, 127, 127, 144, 184, 96, 22, 139, 169, 129, 90, 64],
    [234, 197, 147, 120, 140, 219, 127, 33, 98, 127, 127, 54, 0],
    [148, 184, 225, 95, 55, 134, 127, 108, 121, 127, 127, 54, 0],
    [191, 191, 186, 108, 98, 176, 159, 134, 174, 191, 191, 81, 0],
    [255, 201, 127, 127, 161, 240, 191, 142, 220, 255, 255, 108, 0],
]


def test_numpy_linear_matches_recorded_opencv_output():
    """A known answer (the Gen1 tests' fixture), so the fixed-point arithmetic is checked even without cv2."""
    src = np.array(RESIZE_SRC, np.uint8)
    out = resize_u8(np.stack([src, src]), (9, 13), "linear", backend="numpy")
    np.testing.assert_array_equal(out, np.stack([np.array(RESIZE_CV2, np.uint8)] * 2))


def test_without_opencv(monkeypatch):
    monkeypatch.setattr(resize_module, "_load_cv2", lambda: None)
    assert not opencv_available()
    img = np.random.default_rng(0).integers(0, 256, (3, 30, 40), dtype=np.uint8)
    np.testing.assert_array_equal(resize_u8(img, (15, 21), "area"), resize_u8(img, (15, 21), "area", "numpy"))
    with pytest.raises(MissingDependencyError, match="opencv-python-headless"):
        resize_u8(img, (15, 21), backend="opencv")


def test_opencv_available_reports_the_import():
    assert opencv_available() is (cv2 is not None)


@pytest.mark.parametrize(
    ("image", "size", "kwargs", "match"),
    [
        (np.zeros((4, 4), np.float32), (2, 2), {}, "uint8"),
        (np.zeros((4, 4), np.int64), (2, 2), {}, "uint8"),
        ([[0, 1], [2, 3]], (2, 2), {}, "numpy array"),
        (np.zeros(4, np.uint8), (2, 2), {}, r"\[\.\.\., H, W\]"),
        (np.zeros((0, 4), np.uint8), (2, 2), {}, r"H, W >= 1"),
        (np.zeros((3, 4, 0), np.uint8), (2, 2), {}, r"H, W >= 1"),
        (np.zeros((4, 4), np.uint8), (0, 2), {}, "positive ints"),
        (np.zeros((4, 4), np.uint8), (2, -1), {}, "positive ints"),
        (np.zeros((4, 4), np.uint8), (2,), {}, "positive ints"),
        (np.zeros((4, 4), np.uint8), (2.0, 2), {}, "positive ints"),
        (np.zeros((4, 4), np.uint8), (True, 2), {}, "positive ints"),
        (np.zeros((4, 4), np.uint8), 2, {}, "positive ints"),
        (np.zeros((4, 4), np.uint8), (2, 2), {"interpolation": "cubic"}, r"'linear', 'area'"),
        (np.zeros((4, 4), np.uint8), (2, 2), {"backend": "cuda"}, r"'auto', 'opencv', 'numpy'"),
    ],
)
def test_bad_arguments(image, size, kwargs, match):
    with pytest.raises(InvalidArgumentError, match=match):
        resize_u8(image, size, **kwargs)
