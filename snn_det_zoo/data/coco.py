"""COCO detection: ``instances_*.json`` + an image folder, as original images with their boxes.

Category ids stay COCO's in the annotation file and in every result; :class:`CategoryMap` is the one place
where they become contiguous class indices (for COCO 2017, the usual 80-class map ``COCO80_TO_COCO91``).
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Sequence

import torch
from torch.utils.data import Dataset

from ..constants import COCO80_TO_COCO91
from ..errors import DataFormatError, DataNotFoundError, InvalidArgumentError
from ..labels import load_coco_json
from .images import read_image

__all__ = ["CategoryMap", "CocoDetection"]


class CategoryMap:
    """COCO category ids <-> contiguous class indices ``0 .. n-1``.

    :param ids: the category id of each class index, e.g. ``COCO80_TO_COCO91``.
    """

    def __init__(self, ids: Sequence[int]):
        self.ids = tuple(int(i) for i in ids)
        if len(set(self.ids)) != len(self.ids):
            raise InvalidArgumentError(f"category ids must be distinct, got {self.ids}")
        self._label = {cat: label for label, cat in enumerate(self.ids)}

    @classmethod
    def from_categories(cls, categories: Sequence[dict]) -> CategoryMap:
        """The map of an annotation file: COCO's 80-class order when the file has exactly those ids, else the
        ids sorted."""
        ids = sorted(int(c["id"]) for c in categories)
        return cls(COCO80_TO_COCO91 if tuple(ids) == tuple(sorted(COCO80_TO_COCO91)) else ids)

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        return f"CategoryMap({len(self)} classes)"

    def label(self, category_id: int) -> int:
        """Class index of a COCO category id."""
        try:
            return self._label[int(category_id)]
        except KeyError:
            raise InvalidArgumentError(
                f"category id {category_id} is not one of the {len(self)} mapped ids"
            ) from None

    def category_id(self, label: int) -> int:
        """COCO category id of a class index."""
        if not 0 <= int(label) < len(self.ids):
            raise InvalidArgumentError(f"class index {label} outside 0..{len(self.ids) - 1}")
        return self.ids[int(label)]


class CocoDetection(Dataset):
    """COCO images with their boxes, in original pixels (each model's transform maps them into its input).

    Each sample is ``(image, target)``: ``image`` a uint8 ``[3, H, W]`` RGB tensor as decoded; ``target``
    holds ``boxes`` (float32 ``[N, 4]`` xyxy in original pixels; zero-size boxes dropped), ``labels`` (int64
    class indices, see ``categories``), ``category_ids`` (COCO's), ``iscrowd``, ``image_id`` and
    ``orig_size`` ``(h, w)``.

    :param image_dir: the folder with the images named in ``file_name``.
    :param ann_file: the ``instances_*.json`` file.
    :param categories: a :class:`CategoryMap`; default: :meth:`CategoryMap.from_categories` of the file.
    :raises DataNotFoundError: the image folder or the annotation file does not exist.
    :raises DataFormatError: the annotation file is not valid COCO ground truth
        (:func:`..labels.check_coco_dict`: repeated ids, unknown images or categories, non-finite boxes),
        or an image lacks its ``file_name``.
    :raises InvalidArgumentError: the annotations use categories that ``categories`` does not map.
    """

    def __init__(
        self,
        image_dir: str | os.PathLike,
        ann_file: str | os.PathLike,
        categories: CategoryMap | None = None,
    ):
        self.image_dir = os.fspath(image_dir)
        self.ann_file = os.fspath(ann_file)
        if not os.path.isdir(self.image_dir):
            raise DataNotFoundError(f"COCO image folder not found: {self.image_dir}")
        data = load_coco_json(self.ann_file)  # the metrics' validation: ids, references, finite boxes
        self.categories = categories or CategoryMap.from_categories(data["categories"])
        for i, im in enumerate(data["images"]):
            if not isinstance(im.get("file_name"), str):
                raise DataFormatError(f"{self.ann_file}: images[{i}] (id {im['id']}) needs a string 'file_name'")
        self.images = sorted(data["images"], key=lambda im: im["id"])
        self._annotations: dict[int, list[dict]] = defaultdict(list)
        for ann in data["annotations"]:
            self._annotations[ann["image_id"]].append(ann)
        unknown = {a["category_id"] for a in data["annotations"]} - set(self.categories.ids)
        if unknown:
            raise InvalidArgumentError(
                f"{self.ann_file}: annotations use category ids {sorted(unknown)} that are not in "
                f"the category map given ({len(self.categories)} ids)"
            )

    def __len__(self) -> int:
        return len(self.images)

    def __repr__(self) -> str:
        return (
            f"CocoDetection(ann_file={self.ann_file!r}, images={len(self)}, classes={len(self.categories)})"
        )

    @property
    def image_ids(self) -> list[int]:
        return [im["id"] for im in self.images]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict]:
        info_json = self.images[index]
        image = read_image(os.path.join(self.image_dir, info_json["file_name"]))  # boxes are in stored pixels
        orig_size = tuple(image.shape[-2:])
        anns = [
            a for a in self._annotations.get(info_json["id"], []) if a["bbox"][2] > 0 and a["bbox"][3] > 0
        ]
        xywh = torch.tensor([a["bbox"] for a in anns], dtype=torch.float32).reshape(-1, 4)
        boxes = torch.cat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], dim=1)
        target = {
            "boxes": boxes,
            "labels": torch.tensor(
                [self.categories.label(a["category_id"]) for a in anns], dtype=torch.int64
            ),
            "category_ids": torch.tensor([a["category_id"] for a in anns], dtype=torch.int64),
            "iscrowd": torch.tensor([int(a.get("iscrowd", 0)) for a in anns], dtype=torch.int64),
            "image_id": int(info_json["id"]),
            "orig_size": orig_size,
        }
        return image, target
