"""Read an Ultralytics / YOLOv5 training checkpoint into a flat state dict plus its metadata.

Both trainers ``torch.save`` a dict whose ``model`` (and ``ema``) entry is the whole pickled ``nn.Module``,
in FP16. :func:`load_checkpoint` reads it through the restricted unpickler (:mod:`.unpickler`) and walks the
stubbed module tree the way ``nn.Module.state_dict`` would: parameters, then persistent buffers, then
children, with dotted module paths as keys (``model.0.conv.weight``...).
"""

from __future__ import annotations

import argparse
import math
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
    return isinstance(obj, StubObject) and isinstance(dict.get(stub_state(obj), "_modules"), dict)


# Deeper than any real network (SpikeYOLO nests about 8 modules); a hostile file may nest without end.
_MAX_DEPTH = 64


_MAX_NAME = 256  # a parameter's or child module's name ("weight", "cv2", "12")
_MAX_KEY = 4096  # a whole dotted key


def module_state_dict(
    module: StubObject, prefix: str = "", classes: set[str] | None = None
) -> OrderedDict[str, torch.Tensor]:
    """The ``state_dict`` that the pickled ``nn.Module`` ``module`` would have produced.

    Follows ``nn.Module._save_to_state_dict``: non-``None`` ``_parameters``, then ``_buffers`` not in
    ``_non_persistent_buffers_set``, then every child under ``<prefix><name>.``. ``classes`` collects the
    class names met on the way. A module tree that reaches a module twice (itself, or a shared child whose
    keys would double at every level), nests deeper than any network or has names longer than any network's
    is a :class:`CheckpointFormatError`.
    """
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    _collect(module, prefix, out, classes if classes is not None else set(), set(), 0)
    return out


def _collect(module: Any, prefix: str, out: OrderedDict[str, torch.Tensor], classes: set[str],
             seen: set[int], depth: int) -> None:
    where = prefix.rstrip(".") or "the model"
    if not _is_module_stub(module):
        raise CheckpointFormatError(f"{where[:200]} is {type(module).__name__}, not a pickled nn.Module")
    if id(module) in seen or depth > _MAX_DEPTH:
        raise CheckpointFormatError(f"{where[:200]}: the module tree reaches a module twice (or contains "
                                    f"itself) or nests deeper than {_MAX_DEPTH} levels")
    seen.add(id(module))
    classes.add(stub_name(module) or "")
    state = stub_state(module)
    non_persistent = dict.get(state, "_non_persistent_buffers_set") or set()
    if not isinstance(non_persistent, set | frozenset | list | tuple):
        raise CheckpointFormatError(f"{where}: _non_persistent_buffers_set is {type(non_persistent).__name__}")
    for kind in ("_parameters", "_buffers", "_modules"):
        entries = dict.get(state, kind) or {}
        if not isinstance(entries, dict):
            raise CheckpointFormatError(f"{where}: {kind} is {type(entries).__name__}, not a dict")
        for name, value in dict.items(entries):  # dict's own method: nothing of the file can shadow it
            if value is None or (kind == "_buffers" and name in non_persistent):
                continue
            if not isinstance(name, str) or len(name) > _MAX_NAME or len(prefix) + len(name) > _MAX_KEY:
                raise CheckpointFormatError(f"{where}: a {kind[1:-1]} name that is not a string of at most "
                                            f"{_MAX_NAME} characters")
            if kind == "_modules":
                _collect(value, f"{prefix}{name}.", out, classes, seen, depth + 1)
            elif not isinstance(value, torch.Tensor):
                raise CheckpointFormatError(f"{prefix}{name} is {type(value).__name__}, not a tensor")
            else:
                out[prefix + name] = value


def _to_fp32(state_dict: OrderedDict[str, torch.Tensor],
             file_size: int) -> tuple[OrderedDict[str, torch.Tensor], set[str]]:
    """Floating tensors -> contiguous FP32 copies (the files are FP16); integer buffers copied as they are.

    Entries that are the same view of the same storage (tied weights) share one copy; all copies together
    may not hold more source bytes than the file does, however often a storage is referred to.
    """
    dtypes = {str(t.dtype) for t in state_dict.values() if t.is_floating_point()}
    copies: dict[tuple, torch.Tensor] = {}
    budget = file_size
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    for key, tensor in state_dict.items():
        view = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape),
                tensor.stride(), tensor.dtype)
        if view not in copies:
            budget -= tensor.numel() * tensor.element_size()
            if budget < 0:
                raise CheckpointFormatError(f"the state dict refers to more tensor bytes than the file of "
                                            f"{file_size} bytes holds (one storage referred to over and over)")
            copies[view] = tensor.float().contiguous().clone() if tensor.is_floating_point() else \
                tensor.contiguous().clone()
        out[key] = copies[view]
    return out, dtypes


# Metadata beyond this many values (characters for strings) is cut off: a checkpoint's metadata is a few
# hundred small values.
_MAX_METADATA_ITEMS = 200_000


class _Plain:
    """JSON-friendly copies of metadata: stubs become their class name, tensors lists, paths strings.

    One budget serves every copy made for one checkpoint, because a hostile file may nest without end, share
    one list or string many times over (each copy doubling the work), contain itself, or declare arrays whose
    lists would outnumber their bytes (shape (N, 0)): nesting deeper than :data:`_MAX_DEPTH` becomes
    ``'<too deep>'``, and once :data:`_MAX_METADATA_ITEMS` values are spent the rest become ``'<cut off>'``.
    """

    def __init__(self) -> None:
        self.budget = _MAX_METADATA_ITEMS

    def __call__(self, value: Any, depth: int = 0) -> Any:
        self.budget -= 1
        if self.budget < 0:
            return "<cut off>"
        if depth > _MAX_DEPTH:
            return "<too deep>"
        if isinstance(value, dict):
            return {str(k): self(v, depth + 1) for k, v in dict.items(value)}
        if isinstance(value, list | tuple | set | frozenset):
            return [self(v, depth + 1) for v in value]
        if isinstance(value, torch.Tensor | np.ndarray):
            self.budget -= math.prod(max(int(d), 1) for d in value.shape)  # every list tolist() builds
            return value.tolist() if self.budget >= 0 else f"<array of shape {list(value.shape)}>"
        if isinstance(value, StubObject):  # e.g. Ultralytics' IterableSimpleNamespace of training arguments
            state = None if _is_module_stub(value) else (stub_state(value) or value._stub_items)
            return self(state, depth + 1) if state else f"<{stub_name(value)}>"
        if isinstance(value, str):
            self.budget -= len(value)
            return value if self.budget >= 0 else "<cut off>"
        if value is None or isinstance(value, bool | int | float):
            return value
        if isinstance(value, bytes | bytearray):
            return f"<{len(value)} bytes>"
        if isinstance(value, np.generic):  # numpy scalar
            return value.item()
        if isinstance(value, argparse.Namespace):
            return self(vars(value), depth + 1)
        return self(str(value), depth + 1)  # paths, dates, devices: short strings, charged as such


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
    which = "ema" if dict.get(ckpt, "ema") is not None else "model"
    model = dict.get(ckpt, which)
    if model is None:
        raise CheckpointFormatError(f"{path}: the checkpoint has neither 'ema' nor 'model' "
                                    f"(keys: {sorted(map(str, ckpt))})")
    if not _is_module_stub(model):
        raise CheckpointFormatError(f"{path}: ckpt[{which!r}] is {type(model).__name__}, not a pickled "
                                    "model; plain state dicts are read by hub.load_state_dict_file")
    classes: set[str] = set()
    state_dict, dtypes = _to_fp32(module_state_dict(model, classes=classes), os.path.getsize(path))
    plain = _Plain()
    attrs = stub_state(model)
    yaml_cfg = dict.get(attrs, "yaml")
    train_args = dict.get(ckpt, "train_args", dict.get(ckpt, "opt")) or {}
    return AuthorCheckpoint(
        path=path,
        state_dict=state_dict,
        source_dtypes=dtypes,
        which=which,
        model_class=stub_name(model) or "",
        yaml=plain(yaml_cfg) if isinstance(yaml_cfg, dict) else None,
        attributes={k: plain(attrs[k]) for k in _MODEL_ATTRIBUTES if k in attrs},
        epoch=dict.get(ckpt, "epoch") if isinstance(dict.get(ckpt, "epoch"), int) else None,
        train_args=plain(train_args) if isinstance(train_args, dict) else {"value": plain(train_args)},
        classes=classes,
        extra={str(k): plain(v) for k, v in dict.items(ckpt) if k not in _NOT_METADATA},
    )
