"""The COCO dataset on a tiny annotation file and images written here."""

import json
import re

import numpy as np
import pytest
import torch
from PIL import Image

from snn_det_zoo import labels as labels_module
from snn_det_zoo.constants import COCO80_TO_COCO91
from snn_det_zoo.data.coco import CategoryMap, CocoDetection
from snn_det_zoo.errors import DataFormatError, DataNotFoundError, InvalidArgumentError
from snn_det_zoo.labels import check_coco_dict

COCO80_CATEGORIES = [{"id": i, "name": f"c{i}"} for i in COCO80_TO_COCO91]


def test_samples_are_original_images_with_original_boxes_and_coco_ids(tmp_path, coco_case):
    images_dir, ann_file = coco_case(tmp_path)
    ds = CocoDetection(images_dir, ann_file)
    assert len(ds) == 2 and ds.image_ids == [7, 9]
    image, target = ds[0]
    # The decoded pixels as they are: each model's transform maps them into its own input.
    pixels = np.array(Image.open(images_dir / "a.png"))
    assert image.dtype == torch.uint8 and torch.equal(image, torch.from_numpy(pixels).permute(2, 0, 1))
    assert target["image_id"] == 7 and target["orig_size"] == (50, 80)
    # The zero-width box is dropped; the crowd box is kept and flagged.
    torch.testing.assert_close(
        target["boxes"], torch.tensor([[10.0, 5.0, 30.0, 35.0], [0.0, 0.0, 80.0, 50.0]])
    )
    assert target["category_ids"].tolist() == [1, 90] and target["labels"].tolist() == [0, 79]
    assert target["iscrowd"].tolist() == [0, 1]
    _, empty = ds[1]
    assert empty["boxes"].shape == (0, 4) and empty["labels"].shape == (0,)


def test_category_map():
    m = CategoryMap.from_categories(COCO80_CATEGORIES)
    assert len(m) == 80 and m.label(90) == 79 and m.category_id(11) == 13
    custom = CategoryMap.from_categories([{"id": 30}, {"id": 4}, {"id": 17}])
    assert custom.ids == (4, 17, 30) and custom.label(30) == 2
    with pytest.raises(ValueError, match="category id 12"):
        m.label(12)
    with pytest.raises(ValueError, match="class index 80"):
        m.category_id(80)


def test_malformed_annotations_name_the_file(tmp_path, coco_case):
    images_dir, ann_file = coco_case(tmp_path)
    ann_file.write_text("{ not json")
    with pytest.raises(ValueError, match=re.escape("instances_val2017.json: not valid JSON")):
        CocoDetection(images_dir, ann_file)
    ann_file.write_text(json.dumps({"images": [], "annotations": {}, "categories": []}))
    with pytest.raises(
        ValueError, match=re.escape("instances_val2017.json: expected 'annotations' to be a list")
    ):
        CocoDetection(images_dir, ann_file)


def test_bad_boxes_categories_and_missing_images(tmp_path, coco_case):
    bad_box = [{"id": 1, "image_id": 7, "category_id": 1, "bbox": [1, 2, 3]}]
    images_dir, ann_file = coco_case(tmp_path, annotations=bad_box)
    with pytest.raises(ValueError, match=r"instances_val2017.json: annotations\[0\]\['bbox'\] must be"):
        CocoDetection(images_dir, ann_file)
    ann_file.unlink()
    for p in images_dir.iterdir():
        p.unlink()
    images_dir.rmdir()
    # Category 12 is in the file but not in the map given.
    ann = [{"id": 1, "image_id": 7, "category_id": 12, "bbox": [1, 2, 3, 4]}]
    images_dir, ann_file = coco_case(tmp_path, categories=[*COCO80_CATEGORIES, {"id": 12}], annotations=ann)
    with pytest.raises(InvalidArgumentError, match=r"category ids \[12\] that are not in the category map given"):
        CocoDetection(images_dir, ann_file, categories=CategoryMap(COCO80_TO_COCO91))
    ds = CocoDetection(images_dir, ann_file, categories=CategoryMap([12]))
    (images_dir / "a.png").unlink()
    with pytest.raises(DataNotFoundError, match=re.escape("a.png")):
        ds[0]
    with pytest.raises(DataNotFoundError, match=re.escape(str(tmp_path / "nowhere"))):
        CocoDetection(tmp_path / "nowhere", ann_file)
    with pytest.raises(DataNotFoundError, match=re.escape(str(tmp_path / "none.json"))):
        CocoDetection(images_dir, tmp_path / "none.json")


def test_annotation_files_the_metrics_refuse_are_refused_through_the_same_check(tmp_path, monkeypatch, coco_case,
                                                                                  broken_ground_truths):
    # The metric tests' cases, here on an annotation file.
    images_dir, ann_file = coco_case(tmp_path)
    good = json.loads(ann_file.read_text())
    for broken, message in broken_ground_truths(good):
        ann_file.write_text(json.dumps(broken))
        with pytest.raises(DataFormatError, match=re.escape(f"{ann_file}: {message}")):
            CocoDetection(images_dir, ann_file)
    # One validation for both: the dataset's refusals are check_coco_dict's, called on the file's path.
    calls = []

    def spy(data, source="ground truth"):
        calls.append(source)
        return check_coco_dict(data, source)

    monkeypatch.setattr(labels_module, "check_coco_dict", spy)
    ann_file.write_text(json.dumps(good))
    CocoDetection(images_dir, ann_file)
    assert calls == [str(ann_file)]
