"""Shared test settings and helpers: every test's own cache; files in the real formats; tiny model settings.

Helpers live here as fixtures (no test module imports another).
"""

import json
import math
import os
import socket

import numpy as np
import pytest
import torch
from PIL import Image

from snn_det_zoo.constants import COCO80_TO_COCO91, SHAPE_CLASSES
from snn_det_zoo.data.gen1 import EVENT_DTYPE, write_dat
from snn_det_zoo.labels import BBOX_DTYPE

NAN, INF = math.nan, math.inf

# Two cores on CI; tests are small, so more threads only add contention.
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Every test gets its own weights cache; nothing under the user's home is touched."""
    monkeypatch.setenv("SNN_DET_ZOO_HOME", str(tmp_path / "zoo_home"))
    # The user's own settings do not reach the tests (those that need one set it).
    for name in ("SNN_DET_ZOO_ILIF_BACKEND", "SNN_DET_ZOO_RESULTS", "SNN_DET_ZOO_OFFLINE", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    yield


_LOOPBACK = {"localhost", "127.0.0.1", "::1"}
_real_getaddrinfo = socket.getaddrinfo


@pytest.fixture(autouse=True)
def _no_internet(monkeypatch):
    """No test goes online: names other than the loopback do not resolve (download tests use a local server)."""
    def loopback_only(host, *args, **kwargs):
        if host is not None and str(host) not in _LOOPBACK:
            raise OSError(f"tests stay offline: {host!r} is not the loopback")
        return _real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", loopback_only)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``cuda`` need a CUDA device: without one (CI) they are skipped with that reason."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (CI has none)")
    for item in items:
        if item.get_closest_marker("cuda"):
            item.add_marker(skip)


# ---------------------------------------------------------------------------------------------- models

TINY_SIZE = 64


def tiny_args() -> dict:
    """Builder arguments that keep a registered model's architecture but make it cheap: 3 classes and 64x64
    input (full-size networks are built on the meta device where only shapes and counts matter)."""
    return {"num_classes": len(SHAPE_CLASSES), "class_names": "shapes", "img_size": TINY_SIZE}


@pytest.fixture
def tiny_model():
    """``tiny_model(name, **overrides)``: the registered model ``name`` at tiny settings, at a quarter of its
    width where the family has a width multiple."""
    from snn_det_zoo import create_model

    def build(name: str, **overrides):
        args = {**tiny_args(), **overrides}
        try:
            return create_model(name, **{"width_multiple": 0.25, **args})
        except TypeError:  # no width multiple in this family
            return create_model(name, **args)

    return build


# ---------------------------------------------------------------------------------------------- data files


def random_events(n: int, t_max: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ev = np.zeros(n, dtype=EVENT_DTYPE)
    ev["t"] = np.sort(rng.integers(0, t_max, n))
    ev["x"], ev["y"], ev["p"] = rng.integers(0, 304, n), rng.integers(0, 240, n), rng.integers(0, 2, n)
    return ev


def _gen1_split(root, name="rec", seed=0):
    """A Gen1 ``test`` split in the real formats: one ``_td.dat`` recording and its ``_bbox.npy`` labels."""
    split = root / "test"
    split.mkdir(parents=True, exist_ok=True)
    write_dat(split / f"{name}_td.dat", random_events(5000, 2_000_000, seed))
    boxes = np.zeros(5, BBOX_DTYPE)
    boxes["t"] = [600_000, 600_000, 1_100_000, 1_100_000, 1_600_000]
    boxes["x"], boxes["y"], boxes["w"], boxes["h"] = 10, 20, 40, 30
    boxes["class_id"] = [0, 1, 0, 0, 1]
    boxes["track_id"] = [1, 2, 1, 1, 5]  # track 1 twice at 1.1 s: one box kept
    np.save(split / f"{name}_bbox.npy", boxes)
    return boxes


@pytest.fixture
def gen1_split():
    """``gen1_split(root, name="rec", seed=0) -> boxes``: writes a Gen1 test split under ``root``."""
    return _gen1_split


def _broken_ground_truths(gt):
    """``(a broken copy of gt, what the error says after "<source>: ")`` for each refusal of
    ``check_coco_dict``; ``gt`` has at least two annotations. The metric and the COCO data tests use it."""
    a0, a1, *rest = gt["annotations"]
    im0, cat0 = gt["images"][0], gt["categories"][0]
    n_img, n_cat = len(gt["images"]), len(gt["categories"])

    def ann0(**change):
        return {**gt, "annotations": [{**a0, **change}, a1, *rest]}

    return [
        (
            {**gt, "annotations": [a0, {**a1, "id": a0["id"]}, *rest]},
            f"annotations[1] repeats id {a0['id']} of annotations[0]",
        ),
        (
            {**gt, "images": [*gt["images"], dict(im0)]},
            f"images[{n_img}] repeats id {im0['id']} of images[0]",
        ),
        (
            {**gt, "categories": [*gt["categories"], dict(cat0)]},
            f"categories[{n_cat}] repeats id {cat0['id']} of categories[0]",
        ),
        (
            ann0(image_id=123456),
            f"annotations[0] (id {a0['id']}) refers to image_id 123456, which is not in 'images'",
        ),
        (
            ann0(category_id=654),
            f"annotations[0] (id {a0['id']}) refers to category_id 654, which is not in 'categories'",
        ),
        (
            ann0(bbox=[NAN, 1, 2, 3]),
            f"annotations[0] (id {a0['id']}): box is not finite: bbox [nan, 1, 2, 3]; "
            "expected [x, y, w, h] of finite numbers with w >= 0 and h >= 0",
        ),
        (ann0(bbox=[1, 2, 3, INF]), f"annotations[0] (id {a0['id']}): box is not finite"),
        (ann0(bbox=[1, 2, -3, 4]), f"annotations[0] (id {a0['id']}): negative width or height"),
        (ann0(area=NAN), f"annotations[0] (id {a0['id']}) has area nan; expected a finite number >= 0"),
    ]



@pytest.fixture
def broken_ground_truths():
    """``broken_ground_truths(gt) -> [(broken copy, message)]``: each refusal of ``check_coco_dict``."""
    return _broken_ground_truths


# COCO

COCO80_CATEGORIES = [{"id": i, "name": f"c{i}"} for i in COCO80_TO_COCO91]


def _coco_case(tmp_path, categories=None, annotations=None):
    """Two PNG images and an instances_val2017.json in the real formats; returns (image folder, file)."""
    categories = COCO80_CATEGORIES if categories is None else categories
    images_dir = tmp_path / "val2017"
    images_dir.mkdir()
    rng = np.random.default_rng(0)
    for name, (h, w) in {"a.png": (50, 80), "b.png": (30, 20)}.items():
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(images_dir / name)
    if annotations is None:
        annotations = [
            {"id": 1, "image_id": 7, "category_id": 1, "bbox": [10, 5, 20, 30], "area": 600, "iscrowd": 0},
            {"id": 2, "image_id": 7, "category_id": 90, "bbox": [0, 0, 80, 50], "area": 4000, "iscrowd": 1},
            {"id": 3, "image_id": 7, "category_id": 13, "bbox": [3, 3, 0, 9], "area": 0, "iscrowd": 0},
        ]
    data = {
        "images": [
            {"id": 9, "file_name": "b.png", "height": 30, "width": 20},
            {"id": 7, "file_name": "a.png", "height": 50, "width": 80},
        ],
        "annotations": annotations,
        "categories": categories,
    }
    ann_file = tmp_path / "instances_val2017.json"
    ann_file.write_text(json.dumps(data))
    return images_dir, ann_file


@pytest.fixture
def coco_case():
    """``coco_case(tmp_path, categories=None, annotations=None) -> (image folder, annotation file)``."""
    return _coco_case
