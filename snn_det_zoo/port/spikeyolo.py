"""Import the SpikeYOLO authors' Ultralytics checkpoints (BICLab/SpikeYOLO: ``best.pt``, ``69M_best.pt``...).

The file is an Ultralytics 8.0.197 training dict whose ``model``/``ema`` is a pickled ``DetectionModel`` in
FP16 (reference/spikeyolo.md §5). Its ``yaml`` attribute is the exact architecture, so the variant is read
from it rather than guessed from the file name:

- the scale (``yaml['scale']``, the letter Ultralytics took from ``snn_yolov8<letter>.yaml``; like
  Ultralytics' ``parse_model`` the first scale is used when it is missing) gives depth and width multiples;
- the MLP ratio of layer 25 (``MS_ConvBlock [1,7]`` or ``[2,7]``) separates the authors' 48M/69M m/l models
  from a model built from the unedited yaml (issue #76 of their repository: loading ``69M_best.pt`` into
  ``[1,7]`` silently dropped tensors);
- the Gen1 code base is recognised by its SpikingJelly ``MultiStepLIFNode`` neurons (and its stock YOLOv8
  scales table); with ``nc: 2`` it is ``spikeyolo_s_gen1``.

Our state dict keeps the authors' ``model.<layer>[.<repeat>].<sub>`` keys, so the key map is the identity;
:func:`~snn_det_zoo.port.keymap.map_state_dict` still proves that every tensor on both sides is used.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from typing import Any

import torch

from ..archs.spikeyolo import _SCALES, VARIANTS
from ..errors import CheckpointFormatError
from .checkpoint import AuthorCheckpoint
from .formats import register_format
from .keymap import import_authors_checkpoint

__all__ = ["import_spikeyolo", "spikeyolo_variant"]

# (depth multiple, width multiple, layer-25 MLP ratio) of the authors' snn_yolov8.yaml -> our variant, derived
# from the family's own tables (archs/spikeyolo.py), split by neuron (the COCO and the Gen1 code bases).
def _variant_table(neuron: str) -> dict[tuple[float, float, int], str]:
    return {(_SCALES[scale][0], _SCALES[scale][1], _SCALES[scale][3]): name
            for name, (scale, kind) in VARIANTS.items() if kind == neuron}


_COCO_VARIANTS = _variant_table("coco")
_GEN1_VARIANTS = _variant_table("gen1")
_LAYER25 = 25  # the P5 output block, MS_ConvBlock [ratio, 7]
_NUM_LAYERS = 27
# The Gen1 repository kept Ultralytics' stock YOLOv8 scales table (n width 0.25); the COCO one has 0.375.
_STOCK_YOLOV8_N_WIDTH = 0.25
# Renames from the authors' keys to ours (none: the re-implementation keeps their names).
_RENAMES: tuple[tuple[str, str], ...] = ()


def _rows(cfg: dict[str, Any], path: str) -> list[list[Any]]:
    try:
        rows = list(cfg["backbone"]) + list(cfg["head"])
    except (KeyError, TypeError) as exc:
        raise CheckpointFormatError(f"{path}: the checkpoint's yaml has no backbone/head layer lists") from exc
    modules = [row[2] if isinstance(row, list | tuple) and len(row) == 4 else None for row in rows]
    if len(rows) != _NUM_LAYERS or modules[0] != "MS_GetT" or modules[-1] != "SpikeDetect":
        raise CheckpointFormatError(f"{path}: not a SpikeYOLO snn_yolov8 layer graph ({len(rows)} layers: {modules})")
    return rows


def spikeyolo_variant(ckpt: AuthorCheckpoint) -> tuple[str, dict[str, Any]]:
    """The registered variant that matches the checkpoint's yaml, and the facts it was chosen from."""
    cfg = ckpt.yaml
    if not cfg:
        raise CheckpointFormatError(f"{ckpt.path}: the pickled model has no 'yaml' attribute (its architecture)")
    rows = _rows(cfg, ckpt.path)
    scales = cfg.get("scales") or {}
    scale = cfg.get("scale") or ""
    if scales:
        if scale not in scales:  # what Ultralytics' parse_model does with a missing scale letter
            scale = next(iter(scales))
        depth, width = (float(v) for v in scales[scale][:2])
    else:
        depth, width = float(cfg.get("depth_multiple", 1.0)), float(cfg.get("width_multiple", 1.0))
    ratio = int(rows[_LAYER25][3][0])
    spikingjelly_neuron = any(c.startswith("spikingjelly.") and "LIF" in c for c in ckpt.classes)
    stock_scales = float((scales.get("n") or [0, 0])[1]) == _STOCK_YOLOV8_N_WIDTH
    gen1 = spikingjelly_neuron or stock_scales
    facts = {"scale": scale, "depth_multiple": depth, "width_multiple": width,
             "layer25_args": rows[_LAYER25][3], "nc": int(cfg.get("nc", 80)), "gen1_code": gen1}
    table = _GEN1_VARIANTS if gen1 else _COCO_VARIANTS
    variant = table.get((round(depth, 3), round(width, 3), ratio))
    if variant is None:
        known = ", ".join(f"{v} (depth {d}, width {w}, layer 25 [{r},7])" for (d, w, r), v in table.items())
        raise CheckpointFormatError(f"{ckpt.path}: no registered SpikeYOLO variant has depth {depth}, width "
                                    f"{width} and layer 25 {rows[_LAYER25][3]} ({'Gen1' if gen1 else 'COCO'} "
                                    f"code); known: {known}")
    return variant, facts


@register_format("ultralytics-pickle", family="spikeyolo")
def import_spikeyolo(path: str | os.PathLike[str]) -> tuple[OrderedDict[str, torch.Tensor], dict[str, Any]]:
    """Read an authors' SpikeYOLO checkpoint: ``(state dict with our keys, FP32; card of what was found)``.

    The card names the ``variant`` (``spikeyolo_n/s/m/l`` or ``spikeyolo_s_gen1``) and records the yaml
    facts, the epoch, the training arguments and which entry (``ema``/``model``) the weights come from.

    Raises:
        UnsafeCheckpointError, CheckpointFormatError: see :func:`~snn_det_zoo.port.load_checkpoint`.
        ValueError: the yaml matches no variant; KeyMapError (a ValueError) when the tensors do not cover the
            variant's state dict exactly (lists both sides).
    """
    return import_authors_checkpoint(path, "spikeyolo", spikeyolo_variant, _RENAMES)
