"""Import the EMS-YOLO authors' YOLOv5-style checkpoints (BICLab/EMS-YOLO, "COCO_EMS-ResNet34").

The file is a YOLOv5 ``torch.save`` dict whose ``model`` is a pickled ``models.yolo.Model`` holding the
FP16 EMA weights (``ema`` is ``None`` once ``strip_optimizer`` ran; reference/emsyolo.md §7). The model's
``yaml`` is the configuration it was built from; it is matched row by row (from, repeats, block, block
arguments) against the configuration tables of :mod:`snn_det_zoo.archs.ems_yolo`, so e.g. the released
"EMS-Res34" run resolves to ``resnet34-cat`` whatever the README calls it. The ``Detect.anchors`` buffer of
the checkpoint travels with the weights. T is not stored in the file.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch

from ..archs.ems_yolo import VARIANTS
from ..errors import CheckpointFormatError
from .checkpoint import AuthorCheckpoint
from .formats import register_format
from .keymap import import_authors_checkpoint

__all__ = ["ems_yolo_variant", "import_ems_yolo"]

# (the authors' YAML file = our configuration table, width multiple) -> registered variant, from the family's
# own table.
_VARIANTS = {(config, width): name for name, (config, width) in VARIANTS.items()}
# Rows whose YAML arguments are not block shapes (upsampling mode, concat dim, nc/anchors).
_ARGLESS = {"Sample", "Concat", "Detect"}
# Renames from the authors' keys to ours (none: the re-implementation keeps their names).
_RENAMES: tuple[tuple[str, str], ...] = ()


def _signature(rows: Sequence[Sequence[Any]]) -> tuple[tuple[Any, ...], ...]:
    """Comparable form of [from, repeats, module, args] rows (YAML lists or our tuples)."""
    out = []
    for source, repeats, module, args in rows:
        source = tuple(source) if isinstance(source, list | tuple) else (source,)
        shape_args = () if module in _ARGLESS else tuple(args)
        out.append((source, int(repeats), str(module), shape_args))
    return tuple(out)


def _anchor_set(anchors: Any) -> str:
    from ..archs.ems_yolo import COCO_ANCHORS, GEN1_ANCHORS

    rows = tuple(tuple(level) for level in anchors) if isinstance(anchors, list | tuple) else None
    return {COCO_ANCHORS: "coco", GEN1_ANCHORS: "gen1"}.get(rows, "custom")


def ems_yolo_variant(ckpt: AuthorCheckpoint) -> tuple[str, dict[str, Any]]:
    """The registered variant whose configuration equals the checkpoint's yaml, and the facts read."""
    from ..archs.ems_yolo import CONFIGS  # the configuration tables the builders use

    cfg = ckpt.yaml
    if not cfg:
        raise CheckpointFormatError(f"{ckpt.path}: the pickled model has no 'yaml' attribute (its architecture)")
    try:
        rows = list(cfg["backbone"]) + list(cfg["head"])
        signature = _signature(rows)
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointFormatError(f"{ckpt.path}: the checkpoint's yaml has no readable backbone/head rows") from exc
    multiples = (float(cfg.get("depth_multiple", 1.0)), float(cfg.get("width_multiple", 1.0)))
    matches = [(name, multiples[1]) for name, layers in CONFIGS.items() if _signature(layers) == signature]
    matches = [key for key in matches if key in _VARIANTS]
    if not matches or multiples[0] != 1.0:
        modules = [row[2] for row in rows]
        raise CheckpointFormatError(f"{ckpt.path}: the checkpoint's configuration (modules {modules}, depth/width "
                                    f"multiples {multiples}) matches no EMS-YOLO variant "
                                    f"({', '.join(_VARIANTS.values())})")
    config = matches[0][0]
    facts = {"config": config, "nc": int(cfg.get("nc", 80)), "anchors": _anchor_set(cfg.get("anchors"))}
    return _VARIANTS[matches[0]], facts


@register_format("yolov5-pickle", family="ems_yolo")
def import_ems_yolo(path: str | os.PathLike[str]) -> tuple[OrderedDict[str, torch.Tensor], dict[str, Any]]:
    """Read an authors' EMS-YOLO checkpoint: ``(state dict with our keys, FP32; card of what was found)``.

    Raises:
        UnsafeCheckpointError, CheckpointFormatError: see :func:`~snn_det_zoo.port.load_checkpoint`.
        ValueError: the yaml matches no variant; KeyMapError (a ValueError) when the tensors do not cover the
            variant's state dict exactly (lists both sides).
    """
    return import_authors_checkpoint(path, "ems_yolo", ems_yolo_variant, _RENAMES)
