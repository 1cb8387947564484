"""The models' transform against the authors' pre-processing, written here on OpenCV step for step.

References: Ultralytics 8.0.197 ``BaseDataset.load_image`` + ``set_rectangle`` + ``LetterBox`` (SpikeYOLO's
validator), YOLOv5's ``load_image`` + ``letterbox`` (EMS-YOLO's), and the two Gen1 loaders. The transform must
give the same uint8 pixels (then /255) and a box mapping that inverts exactly.
"""

import math

import numpy as np
import pytest
import torch

import snn_det_zoo as zoo
from snn_det_zoo.errors import InvalidArgumentError
from snn_det_zoo.nn import BoxMapping, LetterboxTransform

cv2 = pytest.importorskip("cv2", reason="the reference pipelines are OpenCV's")

SIZES = [(375, 500), (480, 640), (640, 427), (333, 500), (1000, 750), (1280, 960), (50, 70), (612, 612),
         (200, 1000), (427, 640)]


def _letterbox_ref(im, new_shape, auto=False, scaleup=True, stride=32):
    """Ultralytics' / YOLOv5's letterbox (identical in both), on an HWC uint8 image."""
    shape = im.shape[:2]
    r = min(new_shape[0] / shape[0], new_shape[1] / shape[1])
    if not scaleup:
        r = min(r, 1.0)
    new_unpad = round(shape[1] * r), round(shape[0] * r)
    dw, dh = new_shape[1] - new_unpad[0], new_shape[0] - new_unpad[1]
    if auto:
        dw, dh = np.mod(dw, stride), np.mod(dh, stride)
    dw, dh = dw / 2, dh / 2
    if shape[::-1] != new_unpad:
        im = cv2.resize(im, new_unpad, interpolation=cv2.INTER_LINEAR)
    top, bottom = round(dh - 0.1), round(dh + 0.1)
    left, right = round(dw - 0.1), round(dw + 0.1)
    return cv2.copyMakeBorder(im, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(114, 114, 114)), (left, top)


def _rect_shape(h0, w0, imgsz, stride=32, pad=0.5):
    ar = h0 / w0
    shape = [ar, 1] if ar < 1 else [1, 1 / ar] if ar > 1 else [1, 1]
    return tuple(int(v) for v in np.ceil(np.array(shape) * imgsz / stride + pad).astype(int) * stride)


def ultralytics_val(im, imgsz=640):
    h0, w0 = im.shape[:2]
    r = imgsz / max(h0, w0)
    if r != 1:
        im = cv2.resize(im, (min(math.ceil(w0 * r), imgsz), min(math.ceil(h0 * r), imgsz)),
                        interpolation=cv2.INTER_LINEAR)
    return _letterbox_ref(im, _rect_shape(h0, w0, imgsz), scaleup=False)


def yolov5_val(im, imgsz=640):
    h0, w0 = im.shape[:2]
    r = imgsz / max(h0, w0)
    if r != 1:
        im = cv2.resize(im, (int(w0 * r), int(h0 * r)),
                        interpolation=cv2.INTER_AREA if r < 1 else cv2.INTER_LINEAR)
    return _letterbox_ref(im, _rect_shape(h0, w0, imgsz), scaleup=False)


def _image(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _ours(transform, hwc):
    (x,), (mapping,) = transform([torch.from_numpy(hwc).permute(2, 0, 1)])
    return (x * 255).round().to(torch.uint8).permute(1, 2, 0).numpy(), mapping


@pytest.mark.parametrize("size", SIZES)
def test_spikeyolo_transform_is_ultralytics_validation(size):
    transform = zoo.create_model("spikeyolo_n").transform
    im = _image(*size)
    expected, (left, top) = ultralytics_val(im)
    ours, mapping = _ours(transform, im)
    np.testing.assert_array_equal(ours, expected)
    assert mapping.input_size == expected.shape[:2] and mapping.pad == (left, top)


@pytest.mark.parametrize("size", SIZES)
def test_ems_yolo_transform_is_yolov5_validation(size):
    transform = zoo.create_model("ems_yolo_cfg_resnet34_cat", width_multiple=0.25).transform
    im = _image(*size, seed=1)
    expected, (left, top) = yolov5_val(im)
    ours, mapping = _ours(transform, im)
    np.testing.assert_array_equal(ours, expected)
    assert mapping.input_size == expected.shape[:2] and mapping.pad == (left, top)


def test_gen1_transforms_are_the_authors_loaders():
    frames = np.random.default_rng(2).choice(np.array([0, 127, 255], np.uint8), (2, 240, 304))
    stack = torch.from_numpy(frames).float().div(255).unsqueeze(1).expand(-1, 3, -1, -1)
    # SpikeYOLO: load_image to 253x320 (cv2 bilinear), LetterBox to 320x320 (33 rows above, 34 below).
    (spike,), (mapping,) = zoo.create_model("spikeyolo_s_gen1").transform([stack])
    expected = np.stack([np.pad(cv2.resize(f, (320, 253), interpolation=cv2.INTER_LINEAR), ((33, 34), (0, 0)),
                                constant_values=114) for f in frames])
    np.testing.assert_array_equal((spike[:, 0] * 255).round().numpy().astype(np.uint8), expected)
    assert mapping == BoxMapping((240, 304), (320, 320), (320 / 304, 253 / 240), (0.0, 33.0))
    # EMS-YOLO: every bin stretched to 320x320.
    (ems,), (mapping,) = zoo.create_model("ems_yolo_res10").transform([stack])
    expected = np.stack([cv2.resize(f, (320, 320), interpolation=cv2.INTER_LINEAR) for f in frames])
    np.testing.assert_array_equal((ems[:, 0] * 255).round().numpy().astype(np.uint8), expected)
    assert mapping.scale == (320 / 304, 320 / 240) and mapping.pad == (0.0, 0.0)


def test_prediction_letterbox_pads_to_the_next_stride_multiple():
    transform = LetterboxTransform(640, 32, resize="fit", padding="auto", scaleup=True)
    for size in SIZES:
        im = _image(*size, seed=3)
        expected, (left, top) = _letterbox_ref(im, (640, 640), auto=True)
        ours, mapping = _ours(transform, im)
        np.testing.assert_array_equal(ours, expected)
        assert mapping.pad == (left, top)


def test_box_mapping_inverts_and_clips():
    transform = zoo.create_model("spikeyolo_n").transform
    mapping = transform.mapping(333, 500)
    original = torch.tensor([[10.0, 20.0, 150.0, 280.0], [0.0, 0.0, 500.0, 333.0]])
    assert torch.allclose(mapping.to_original(mapping.to_input(original)), original, atol=1e-4)
    outside = mapping.to_original(torch.tensor([[-50.0, -50.0, 900.0, 900.0]]))
    assert torch.equal(outside, torch.tensor([[0.0, 0.0, 500.0, 333.0]]))
    np.testing.assert_allclose(mapping.to_original(mapping.to_input(original.numpy())), original.numpy(), atol=1e-4)


def test_float_input_in_unit_range_is_read_as_its_bytes():
    transform = zoo.create_model("spikeyolo_n").transform
    im = _image(300, 400, seed=4)
    as_bytes, _ = transform([torch.from_numpy(im).permute(2, 0, 1)])
    as_float, _ = transform([torch.from_numpy(im).permute(2, 0, 1).float() / 255])
    assert torch.equal(as_bytes[0], as_float[0])


def test_float_backend_keeps_the_geometry():
    exact = zoo.create_model("spikeyolo_n").transform
    floats = zoo.create_model("spikeyolo_n", transform_args={"backend": "float"}).transform
    image = torch.rand(3, 300, 400)
    (a,), (ma,) = exact([image])
    (b,), (mb,) = floats([image])
    assert a.shape == b.shape and ma == mb and (a - b).abs().max() < 0.02


def test_bad_inputs_are_refused():
    transform = zoo.create_model("spikeyolo_n").transform
    with pytest.raises(InvalidArgumentError, match="outside"):
        transform([torch.full((3, 10, 10), 2.0)])
    with pytest.raises(InvalidArgumentError, match=r"\[C, H, W\]"):
        transform([torch.zeros(10, 10)])
    with pytest.raises(InvalidArgumentError, match="non-empty"):
        transform([])
    with pytest.raises(InvalidArgumentError, match="uint8 or float"):
        transform([torch.zeros(3, 10, 10, dtype=torch.int32)])
    with pytest.raises(InvalidArgumentError, match="multiple of stride"):
        LetterboxTransform(100, padding="square")
    with pytest.raises(InvalidArgumentError, match="padding"):
        LetterboxTransform(64, padding="center")
