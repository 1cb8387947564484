"""Constants of the datasets and their evaluation, each with its source, in one place.

Data loaders and metrics both read them, so they sit below both (``data`` and ``eval`` import neither each
other nor anything above this module).

Gen1 (Prophesee ATIS automotive detection dataset, de Tournemire et al. 2020, arXiv:2001.08499):

- Sensor size 304 x 240 and classes ("car", "pedestrian"): prophesee-automotive-dataset-toolbox
  ``src/metrics/coco_eval.py`` (``evaluate_detection`` defaults ``height=240, width=304``).
- The corrected Prophesee protocol ("psee"): uzh-rpg/RVT ``utils/evaluation/prophesee/evaluation.py``
  @ b55ee3c6, which fixes the deviations of the toolbox CLI (``src/psee_evaluator.py``: 0.1 s skip,
  inverted side rule):
  Gen1 keeps boxes with diagonal >= 30 px and both sides >= 10 px, for ground truth and predictions alike,
  skips every box with ``t <= 0.5 s`` (the toolbox's ``filter_boxes`` assumes recordings start at t = 0), and
  matches predictions within +-50 ms of each labelled timestamp (``evaluate_detection(time_tol=50000)``).
  The 1 Mpx ("gen4") values are 60 / 20 px, halved when evaluated at half resolution.

COCO (Lin et al. 2014): the 12 summary statistics of pycocotools' ``COCOeval.summarize`` in its order, and the
80-class subset of the 91 COCO category ids (ids 1..90 with gaps, as in ``instances_*.json``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .errors import InvalidArgumentError

__all__ = [
    "CLASS_NAMES",
    "COCO80_NAMES",
    "COCO80_TO_COCO91",
    "COCO_STAT_KEYS",
    "GEN1_CLASSES",
    "GEN1_HEIGHT",
    "GEN1_PSEE",
    "GEN1_WIDTH",
    "GEN4_PSEE",
    "SHAPE_CLASSES",
    "PseeProtocol",
    "class_names",
]

# Order of pycocotools' COCOeval.stats (summarize()._summarizeDets).
COCO_STAT_KEYS: tuple[str, ...] = (
    "AP",
    "AP50",
    "AP75",
    "APs",
    "APm",
    "APl",
    "AR1",
    "AR10",
    "AR100",
    "ARs",
    "ARm",
    "ARl",
)

# The 80 categories used by detectors, as their COCO category ids (contiguous class index -> id).
COCO80_TO_COCO91: tuple[int, ...] = (
    1,
    2,
    3,
    4,
    5,
    6,
    7,
    8,
    9,
    10,
    11,
    13,
    14,
    15,
    16,
    17,
    18,
    19,
    20,
    21,
    22,
    23,
    24,
    25,
    27,
    28,
    31,
    32,
    33,
    34,
    35,
    36,
    37,
    38,
    39,
    40,
    41,
    42,
    43,
    44,
    46,
    47,
    48,
    49,
    50,
    51,
    52,
    53,
    54,
    55,
    56,
    57,
    58,
    59,
    60,
    61,
    62,
    63,
    64,
    65,
    67,
    70,
    72,
    73,
    74,
    75,
    76,
    77,
    78,
    79,
    80,
    81,
    82,
    84,
    85,
    86,
    87,
    88,
    89,
    90,
)

GEN1_WIDTH = 304
GEN1_HEIGHT = 240
GEN1_CLASSES: tuple[str, ...] = ("car", "pedestrian")


@dataclass(frozen=True)
class PseeProtocol:
    """The corrected Prophesee evaluation protocol for one camera (see the module docstring for sources)."""

    name: str
    width: int
    height: int
    classes: tuple[str, ...]
    skip_us: int = 500_000  # boxes with t <= skip_us are dropped (GT and predictions)
    min_box_diag: float = 30.0  # keep w**2 + h**2 >= min_box_diag**2
    min_box_side: float = 10.0  # keep w >= min_box_side and h >= min_box_side
    time_tol_us: int = 50_000  # predictions within +-time_tol_us of a label timestamp count for it
    filter_predictions: bool = True

    def as_dict(self) -> dict:
        """The constants, for printing into every result row."""
        return {
            "protocol": self.name,
            "width": self.width,
            "height": self.height,
            "classes": list(self.classes),
            "skip_us": self.skip_us,
            "min_box_diag": self.min_box_diag,
            "min_box_side": self.min_box_side,
            "time_tol_us": self.time_tol_us,
            "filter_predictions": self.filter_predictions,
        }


GEN1_PSEE = PseeProtocol(name="psee", width=GEN1_WIDTH, height=GEN1_HEIGHT, classes=GEN1_CLASSES)
GEN4_PSEE = PseeProtocol(
    name="psee",
    width=1280,
    height=720,
    classes=("pedestrian", "two-wheeler", "car"),
    min_box_diag=60.0,
    min_box_side=20.0,
)


# The 80 class names in the order of COCO80_TO_COCO91 (the 'name' of each category in instances_*.json).
COCO80_NAMES: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors", "teddy bear",
    "hair drier", "toothbrush",
)

# The classes of the built-in synthetic sets (snn_det_zoo.data.synthetic).
SHAPE_CLASSES: tuple[str, ...] = ("rectangle", "ellipse", "triangle", "cross", "ring")

# Named class lists that model cards refer to (``class_names: coco80``).
CLASS_NAMES: dict[str, tuple[str, ...]] = {"coco80": COCO80_NAMES, "gen1": GEN1_CLASSES, "shapes": SHAPE_CLASSES}


def class_names(spec: str | Sequence[str] | None, num_classes: int) -> tuple[str, ...]:
    """The names of ``num_classes`` classes: a key of :data:`CLASS_NAMES`, a list of names, or ``None``.

    ``None`` (or a named list of another length, when a model is built with its own ``num_classes``) gives
    ``class0``, ``class1``...; an explicit list must have ``num_classes`` names.
    """
    if isinstance(spec, str):
        if spec not in CLASS_NAMES:
            raise InvalidArgumentError(f"unknown class list {spec!r}; known: {sorted(CLASS_NAMES)}")
        names = CLASS_NAMES[spec]
        return names if len(names) == num_classes else tuple(f"class{i}" for i in range(num_classes))
    if spec is None:
        return tuple(f"class{i}" for i in range(num_classes))
    names = tuple(str(n) for n in spec)
    if len(names) != num_classes:
        raise InvalidArgumentError(f"{len(names)} class names given for {num_classes} classes")
    return names
