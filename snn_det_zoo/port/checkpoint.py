"""Read an Ultralytics / YOLOv5 training checkpoint into a flat state dict plus its metadata.

Both trainers ``torch.save`` a dict whose ``model`` (and ``ema``) entry is the whole pickled ``nn.Module``,
in FP16. :func:`load_checkpoint` reads it through the restricted unpickler (:mod:`.unpickler`) and walks the
stubbed module tree the way ``nn.Module.state_dict`` would: parameters, then persistent buffers, then
children, with dotted module paths as keys (``model.0.conv.weight``...).
"""

from __future__ import annotations

import argparse
import os
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..errors import ZooError
from .unpickler import CheckpointFormatError, StubObject, read_torch_pickle, stub_name, stub_state

__all__ = ["AuthorCheckpoint", "load_checkpoint", "module_state_dict"]


@dataclass
class AuthorCheckpoint:
    """What an authors' checkpoint holds, without any of their code.

    Attributes:
        path: the file read.
        state_dict: tensors of the chosen module (``ema`` when present, else ``model``), floats cast to FP32.
        source_dtypes: the floating dtypes the tensors had in the file (e.g. ``{'torch.float16'}``).
        which: ``'ema'`` or ``'model'``: the entry the weights come from.
        model_class: ``'module.Class'`` of the pickled model (e.g. ``ultralytics.nn.tasks.DetectionModel``).
        yaml: the model's architecture dict (``model.yaml``), or ``None``.
        attributes: other plain attributes of the model object (``names``, ``nc``, ``stride``...).
        epoch: the ``epoch`` entry (-1 once the trainer stripped the optimizer).
        train_args: ``train_args`` (Ultralytics) or ``opt`` (YOLOv5), as a dict.
        classes: ``'module.Class'`` of every stub in the model tree (tells e.g. which neuron was used).
        extra: the remaining top-level entries with plain values (``date``, ``version``, ``best_fitness``...).
    """

    path: str
    state_dict: OrderedDict[str, torch.Tensor]
    source_dtypes: set[str]
    which: str
    model_class: str
    yaml: dict[str, Any] | None
    attributes: dict[str, Any] = field(default_factory=dict)
    epoch: int | None = None
    train_args: dict[str, Any] = field(default_factory=dict)
    classes: set[str] = field(default_factory=set)
    extra: dict[str, Any] = field(default_factory=dict)

    def provenance(self) -> dict[str, Any]:
        """JSON-friendly record of where the weights come from (for the cache's card.json)."""
        return {"weights_entry": self.which, "model_class": self.model_class, "epoch": self.epoch,
                "source_dtypes": sorted(self.source_dtypes), "yaml": self.yaml, "train_args": self.train_args,
                "attributes": self.attributes, "extra": self.extra}


def _is_module_stub(obj: Any) -> bool:
    return isinstance(obj, StubObject) and isinstance(stub_state(obj).get("_modules"), dict)


# Deeper than any real network (SpikeYOLO nests about 8 modules); a hostile file may nest without end.
_MAX_DEPTH = 64


def module_state_dict(
    module: StubObject, prefix: str = "", classes: set[str] | None = None
) -> OrderedDict[str, torch.Tensor]:
    """The ``state_dict`` that the pickled ``nn.Module`` ``module`` would have produced.

    Follows ``nn.Module._save_to_state_dict``: non-``None`` ``_parameters``, then ``_buffers`` not in
    ``_non_persistent_buffers_set``, then every child under ``<prefix><name>.``. ``classes`` collects the
    class names met on the way. A module tree that nests deeper than any network or contains itself is a
    :class:`CheckpointFormatError`.
    """
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    _collect(module, prefix, out, classes if classes is not None else set(), ())
    return out


def _collect(module: Any, prefix: str, out: OrderedDict[str, torch.Tensor], classes: set[str],
             parents: tuple[int, ...]) -> None:
    where = prefix.rstrip(".") or "the model"
    if not _is_module_stub(module):
        raise CheckpointFormatError(f"{where} is {type(module).__name__}, not a pickled nn.Module")
    if id(module) in parents or len(parents) > _MAX_DEPTH:
        raise CheckpointFormatError(f"{where}: the module tree contains itself or nests deeper than "
                                    f"{_MAX_DEPTH} levels")
    classes.add(stub_name(module) or "")
    state = stub_state(module)
    non_persistent = state.get("_non_persistent_buffers_set") or set()
    if not isinstance(non_persistent, set | frozenset | list | tuple):
        raise CheckpointFormatError(f"{where}: _non_persistent_buffers_set is {type(non_persistent).__name__}")
    for kind in ("_parameters", "_buffers"):
        entries = state.get(kind) or {}
        if not isinstance(entries, dict):
            raise CheckpointFormatError(f"{where}: {kind} is {type(entries).__name__}, not a dict")
        for name, tensor in entries.items():
            if tensor is None or (kind == "_buffers" and name in non_persistent):
                continue
            if not isinstance(name, str) or not isinstance(tensor, torch.Tensor):
                raise CheckpointFormatError(f"{prefix}{name} is {type(tensor).__name__}, not a tensor")
            out[prefix + name] = tensor
    for name, child in state["_modules"].items():
        if child is not None:
            _collect(child, f"{prefix}{name}.", out, classes, (*parents, id(module)))


def _to_fp32(state_dict: OrderedDict[str, torch.Tensor]) -> tuple[OrderedDict[str, torch.Tensor], set[str]]:
    """Floating tensors -> contiguous FP32 copies (the files are FP16); integer buffers kept as they are."""
    dtypes = {str(t.dtype) for t in state_dict.values() if t.is_floating_point()}
    out = OrderedDict(
        (k, t.float().contiguous().clone() if t.is_floating_point() else t.contiguous().clone())
        for k, t in state_dict.items()
    )
    return out, dtypes


# Metadata beyond this many values is cut off: a checkpoint's metadata is a few hundred small values.
_MAX_METADATA_ITEMS = 100_000


def _plain(value: Any) -> Any:
    """A JSON-friendly copy of metadata: stubs become their class name, tensors lists, paths strings.

    A hostile file may nest without end, share one list many times over (each copy doubling the work) or
    contain itself: nesting deeper than :data:`_MAX_DEPTH` becomes ``'<too deep>'``, and once
    :data:`_MAX_METADATA_ITEMS` values are copied the rest become ``'<cut off>'``.
    """
    budget = [_MAX_METADATA_ITEMS]

    def copy(value: Any, depth: int) -> Any:
        budget[0] -= 1
        if budget[0] < 0:
            return "<cut off>"
        if depth > _MAX_DEPTH:
            return "<too deep>"
        if isinstance(value, dict):
            return {str(k): copy(v, depth + 1) for k, v in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [copy(v, depth + 1) for v in value]
        if isinstance(value, torch.Tensor | np.ndarray):
            count = value.size if isinstance(value, np.ndarray) else value.numel()
            budget[0] -= count
            return value.tolist() if budget[0] >= 0 else f"<array of shape {list(value.shape)}>"
        if isinstance(value, StubObject):  # e.g. Ultralytics' IterableSimpleNamespace of training arguments
            state = None if _is_module_stub(value) else (stub_state(value) or value._stub_items)
            return copy(state, depth + 1) if state else f"<{stub_name(value)}>"
        if value is None or isinstance(value, bool | int | float | str):
            return value
        if isinstance(value, np.generic):  # numpy scalar
            return value.item()
        if isinstance(value, argparse.Namespace):
            return copy(vars(value), depth + 1)
        return str(value)

    return copy(value, 0)


# Model attributes worth keeping as metadata (YOLOv5 Model / Ultralytics DetectionModel).
_MODEL_ATTRIBUTES = ("names", "nc", "stride", "hyp", "args", "pt_path", "task")
# Top-level entries that are weights or optimizer state, not metadata.
_NOT_METADATA = ("model", "ema", "optimizer", "train_args", "opt")


def load_checkpoint(path: str | os.PathLike[str]) -> AuthorCheckpoint:
    """Read an Ultralytics or YOLOv5 checkpoint safely (no ultralytics, no network, no code from the file).

    The weights come from ``ckpt['ema']`` when present and not ``None``, else ``ckpt['model']``, as both
    trainers' own loaders do; FP16 is cast to FP32.

    Raises:
        FileNotFoundError, UnsafeCheckpointError, CheckpointFormatError (see :func:`read_torch_pickle`).
    """
    path = os.fspath(path)
    ckpt = read_torch_pickle(path)
    try:
        return _read_entries(path, ckpt)
    except ZooError as exc:
        if path in str(exc):
            raise
        raise type(exc)(f"{path}: {exc}") from exc
    except Exception as exc:  # whatever a hostile object graph provokes leaves as the zoo's own error
        raise CheckpointFormatError(f"{path}: the checkpoint's objects are not laid out as a trainer writes "
                                    f"them ({type(exc).__name__}: {str(exc)[:200]})") from exc


def _read_entries(path: str, ckpt: Any) -> AuthorCheckpoint:
    if _is_module_stub(ckpt):  # a bare pickled model (torch.save(model))
        ckpt = {"model": ckpt}
    if not isinstance(ckpt, dict):
        raise CheckpointFormatError(f"{path}: expected a checkpoint dict with a 'model' entry, got "
                                    f"{type(ckpt).__name__}")
    which = "ema" if ckpt.get("ema") is not None else "model"
    model = ckpt.get(which)
    if model is None:
        raise CheckpointFormatError(f"{path}: the checkpoint has neither 'ema' nor 'model' "
                                    f"(keys: {sorted(map(str, ckpt))})")
    if not _is_module_stub(model):
        raise CheckpointFormatError(f"{path}: ckpt[{which!r}] is {type(model).__name__}, not a pickled "
                                    "model; plain state dicts are read by hub.load_state_dict_file")
    classes: set[str] = set()
    state_dict, dtypes = _to_fp32(module_state_dict(model, classes=classes))
    attrs = stub_state(model)
    yaml_cfg = attrs.get("yaml")
    train_args = ckpt.get("train_args", ckpt.get("opt")) or {}
    return AuthorCheckpoint(
        path=path,
        state_dict=state_dict,
        source_dtypes=dtypes,
        which=which,
        model_class=stub_name(model) or "",
        yaml=_plain(yaml_cfg) if isinstance(yaml_cfg, dict) else None,
        attributes={k: _plain(attrs[k]) for k in _MODEL_ATTRIBUTES if k in attrs},
        epoch=ckpt.get("epoch") if isinstance(ckpt.get("epoch"), int) else None,
        train_args=_plain(train_args) if isinstance(train_args, dict) else {"value": _plain(train_args)},
        classes=classes,
        extra={str(k): _plain(v) for k, v in ckpt.items() if k not in _NOT_METADATA},
    )
