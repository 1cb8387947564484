"""A restricted unpickler for the authors' pickled checkpoints (Ultralytics / YOLOv5 ``torch.save`` files).

The released SpikeYOLO and EMS-YOLO weights are whole pickled model objects.
An unrestricted ``torch.load`` would import ultralytics or the authors' ``models`` package and run whatever
the pickle asks for; the project never loads them that way. Here no code from the file runs:

- a short allow-list of pure reconstructors (tensors from raw storage bytes, ``OrderedDict``, numpy arrays,
  builtin containers) is served by functions of ours;
- every other global becomes an inert *stub* class that remembers its module and name and records the
  state pickle hands it (``BUILD``, ``SETITEMS``, ``APPENDS``) without running any code;
- a stub may be instantiated (what pickle does for ``nn.Module`` objects) only when its module is one of the
  namespaces that hold model classes (``ultralytics``, ``models``, ``spikingjelly``, ``torch.nn``...);
  a call of any other global (``os.system``, ``builtins.eval``, ``subprocess.Popen``) is refused with an
  error naming it.

Both torch file formats are read: the zip format (``data.pkl`` + ``data/<key>`` records, torch >= 1.6) and
the legacy one (a stream of pickles followed by raw storages).
"""

from __future__ import annotations

import _compat_pickle
import argparse
import collections
import datetime
import io
import os
import pathlib
import pickle
import struct
import zipfile
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

__all__ = [
    "CheckpointFormatError",
    "StubObject",
    "UnsafeCheckpointError",
    "read_torch_pickle",
    "stub_name",
    "stub_state",
]


class UnsafeCheckpointError(ValueError):
    """The checkpoint asks to call a global that is not allow-listed (possible code execution)."""


class CheckpointFormatError(ValueError):
    """The file is not a readable torch checkpoint (corrupt, truncated, or another format)."""


# Modules whose classes may be instantiated as inert stubs: the authors' packages, SpikingJelly and torch.nn
# (pickled nn.Module objects). A prefix matches the module itself and its sub-modules.
_INERT_NAMESPACES = ("ultralytics", "models", "utils", "spikingjelly", "torch.nn")


def _in_inert_namespace(module: str) -> bool:
    return any(module == ns or module.startswith(ns + ".") for ns in _INERT_NAMESPACES)


class _StubMeta(type):
    """Calling a stub class (pickle's REDUCE) records the arguments instead of running anything."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        return cls.__new__(cls, *args, **kwargs)


class StubObject(metaclass=_StubMeta):
    """Stand-in for a class of the checkpoint that we neither import nor run.

    ``_stub_module``/``_stub_name`` say which class it replaces; an instance keeps the constructor arguments,
    the state given to ``__setstate__`` and any items or list elements pickle adds.
    """

    _stub_module = ""
    _stub_name = ""
    _stub_allowed = False

    def __new__(cls, *args: Any, **kwargs: Any) -> StubObject:
        if not cls._stub_allowed:
            raise UnsafeCheckpointError(
                f"the checkpoint calls {cls._stub_module}.{cls._stub_name}, which is not allow-listed; "
                "refusing to load it (a pickle can run arbitrary code this way)"
            )
        obj = object.__new__(cls)
        vars(obj).update(_stub_args=args, _stub_kwargs=kwargs, _stub_state=None)
        vars(obj).update(_stub_items={}, _stub_list=[])
        return obj

    def __setstate__(self, state: Any) -> None:
        self._stub_state = state

    # Containers subclassing dict or list are filled through these by SETITEMS / APPENDS.
    def __setitem__(self, key: Any, value: Any) -> None:
        self._stub_items[key] = value

    def append(self, value: Any) -> None:
        self._stub_list.append(value)

    def extend(self, values: Any) -> None:
        self._stub_list.extend(values)

    def __repr__(self) -> str:
        return f"<stub {self._stub_module}.{self._stub_name}>"


_STUB_CLASSES: dict[tuple[str, str], type[StubObject]] = {}


def _stub_class(module: str, name: str) -> type[StubObject]:
    key = (module, name)
    if key not in _STUB_CLASSES:
        attrs = {"_stub_module": module, "_stub_name": name, "_stub_allowed": _in_inert_namespace(module)}
        _STUB_CLASSES[key] = _StubMeta(name, (StubObject,), attrs)
    return _STUB_CLASSES[key]


def stub_name(obj: Any) -> str | None:
    """``'module.Class'`` of a stub instance, ``None`` for anything else."""
    return f"{obj._stub_module}.{obj._stub_name}" if isinstance(obj, StubObject) else None


def stub_state(obj: StubObject) -> dict[str, Any]:
    """The attribute dict a stub received (``__dict__`` part of the state; slots merged in)."""
    state = obj._stub_state
    if isinstance(state, tuple) and len(state) == 2:  # (dict state, slot state)
        merged = dict(state[0] or {})
        merged.update(state[1] or {})
        return merged
    return state if isinstance(state, dict) else {}


# ----------------------------------------------------------------------------------------------------------
# Allow-listed reconstructors. Each builds plain data; none imports or calls anything named by the file.

_STORAGE_DTYPES = {
    "DoubleStorage": torch.float64,
    "FloatStorage": torch.float32,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
    "ComplexFloatStorage": torch.complex64,
    "ComplexDoubleStorage": torch.complex128,
}


class _StorageType:
    """What ``torch.HalfStorage`` etc. resolve to: only a dtype tag for the persistent ids."""

    def __init__(self, name: str, dtype: torch.dtype) -> None:
        self.name, self.dtype = name, dtype


class _Storage:
    """Raw bytes of one storage (uint8 tensor), viewed with the dtype of the tensors built on it."""

    def __init__(self, data: torch.Tensor, dtype: torch.dtype) -> None:
        self.data, self.dtype = data, dtype


def _rebuild_tensor(storage: Any, offset: int, size: tuple, stride: tuple, *_ignored: Any) -> torch.Tensor:
    if not isinstance(storage, _Storage):
        raise CheckpointFormatError(f"a tensor refers to {type(storage).__name__}, not to a storage record")
    flat = storage.data.view(storage.dtype) if storage.data.numel() else torch.empty(0, dtype=storage.dtype)
    needed = offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True)) + 1 if all(size) else 0
    if needed > flat.numel():
        raise CheckpointFormatError(f"a tensor of size {tuple(size)} overruns its storage of {flat.numel()} "
                                    "elements (truncated file?)")
    return flat.as_strided(tuple(size), tuple(stride), flat.storage_offset() + offset)


def _rebuild_parameter(data: torch.Tensor, requires_grad: bool, *_ignored: Any) -> torch.Tensor:
    # Only the values matter for a state dict; hooks and extra parameter state are dropped.
    return data


def _rebuild_from_type_v2(func: Callable, new_type: Any, args: tuple, state: Any) -> Any:
    if func not in (_rebuild_tensor, _rebuild_parameter):
        raise UnsafeCheckpointError("the checkpoint asks torch._tensor._rebuild_from_type_v2 to call "
                                    f"{getattr(func, '__name__', func)!r}, which is not allow-listed")
    return func(*args)


def _numpy_reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    if subtype is not np.ndarray:
        raise UnsafeCheckpointError(f"numpy array subclass {subtype!r} is not allow-listed")
    return np.ndarray.__new__(np.ndarray, shape, dtype)


def _numpy_scalar(dtype: np.dtype, data: Any = None) -> Any:
    if not isinstance(dtype, np.dtype):
        raise CheckpointFormatError("numpy scalar without a dtype")
    if dtype.hasobject:
        return data
    return np.frombuffer(data, dtype=dtype, count=1)[0]


def _copyreg_reconstructor(cls: Any, base: Any, state: Any) -> Any:
    # Protocol 0/1 pickles build plain objects this way; only stubs may be built.
    if not (isinstance(cls, type) and issubclass(cls, StubObject)) or base is not object:
        raise UnsafeCheckpointError(f"copyreg._reconstructor asked to build {cls!r} from {base!r}")
    return cls.__new__(cls)


def _codecs_encode(text: str, encoding: str = "utf-8") -> bytes:
    # Protocol-2 pickles store bytes as _codecs.encode(str, 'latin1').
    return text.encode(encoding)


_SAFE_GLOBALS: dict[tuple[str, str], Any] = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
    ("torch", "Tensor"): torch.Tensor,
    ("torch.nn.parameter", "Parameter"): torch.nn.Parameter,
    ("torch", "device"): torch.device,
    ("torch", "Size"): torch.Size,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "list"): list,
    ("builtins", "dict"): dict,
    ("builtins", "tuple"): tuple,
    ("builtins", "slice"): slice,
    ("builtins", "complex"): complex,
    ("builtins", "bytearray"): bytearray,
    ("builtins", "object"): object,
    ("_codecs", "encode"): _codecs_encode,
    ("copyreg", "_reconstructor"): _copyreg_reconstructor,
    ("argparse", "Namespace"): argparse.Namespace,
    ("types", "SimpleNamespace"): argparse.Namespace,
    ("pathlib", "PosixPath"): pathlib.PurePosixPath,
    ("pathlib", "WindowsPath"): pathlib.PureWindowsPath,
    ("pathlib", "Path"): pathlib.PurePath,
    ("datetime", "datetime"): datetime.datetime,
    ("datetime", "date"): datetime.date,
    ("datetime", "timedelta"): datetime.timedelta,
    ("numpy", "dtype"): np.dtype,
    ("numpy", "ndarray"): np.ndarray,
}
for _np_core in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _SAFE_GLOBALS[(_np_core, "_reconstruct")] = _numpy_reconstruct
    _SAFE_GLOBALS[(_np_core, "scalar")] = _numpy_scalar
for _name, _dtype in _STORAGE_DTYPES.items():
    _SAFE_GLOBALS[("torch", _name)] = _StorageType(_name, _dtype)
for _dtype in (torch.float64, torch.float32, torch.float16, torch.bfloat16, torch.int64, torch.int32,
               torch.int16, torch.int8, torch.uint8, torch.bool):
    _SAFE_GLOBALS[("torch", str(_dtype).removeprefix("torch."))] = _dtype


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves globals through the allow-list or to stubs; storages through ``load_storage``."""

    def __init__(self, file: io.BufferedIOBase, load_storage: Callable[[tuple], _Storage]) -> None:
        super().__init__(file, encoding="latin1")
        self._load_storage = load_storage

    def find_class(self, module: str, name: str) -> Any:
        # Python-2 era names (protocol <= 2 writes __builtin__.set); pickle's own find_class maps these too.
        module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        if (module, name) in _SAFE_GLOBALS:
            return _SAFE_GLOBALS[(module, name)]
        return _stub_class(module, name)

    def persistent_load(self, pid: Any) -> Any:
        if not isinstance(pid, tuple) or not pid:
            raise CheckpointFormatError(f"unexpected persistent id {pid!r}")
        kind = pid[0].decode("ascii") if isinstance(pid[0], bytes) else pid[0]
        if kind == "module":  # legacy files record module source; ignore it
            return pid[1]
        if kind != "storage":
            raise CheckpointFormatError(f"unknown persistent id type {kind!r}")
        if not isinstance(pid[1], _StorageType):
            raise UnsafeCheckpointError(f"storage type {pid[1]!r} is not an allow-listed torch storage")
        return self._load_storage(pid[1:])


def _unpickle(data: io.BufferedIOBase, load_storage: Callable[[tuple], _Storage], path: str) -> Any:
    try:
        return _RestrictedUnpickler(data, load_storage).load()
    except (UnsafeCheckpointError, CheckpointFormatError):
        raise
    except (pickle.UnpicklingError, EOFError, KeyError, IndexError, TypeError, AttributeError,
            ValueError, struct.error, UnicodeDecodeError) as exc:
        reason = f"{type(exc).__name__}: {exc}"
        raise CheckpointFormatError(f"{path}: cannot read the pickled checkpoint ({reason}); "
                                    "the file may be truncated or corrupt") from exc


def _bytes_tensor(raw: bytes) -> torch.Tensor:
    # frombuffer rejects an empty buffer; a writable copy avoids torch's read-only-buffer warning.
    return torch.frombuffer(bytearray(raw), dtype=torch.uint8) if raw else torch.empty(0, dtype=torch.uint8)


def _read_zip(path: str, archive: zipfile.ZipFile) -> Any:
    names = archive.namelist()
    pkl = [n for n in names if n.endswith("data.pkl") and n.count("/") == 1]
    if len(pkl) != 1:
        raise CheckpointFormatError(f"{path}: a zip file without exactly one <archive>/data.pkl record; "
                                    "not a torch checkpoint")
    prefix = pkl[0][: -len("data.pkl")]
    byteorder = archive.read(prefix + "byteorder").decode() if prefix + "byteorder" in names else "little"
    if byteorder != "little":
        raise CheckpointFormatError(f"{path}: saved on a {byteorder}-endian machine; only little-endian "
                                    "checkpoints are supported")
    storages: dict[str, _Storage] = {}

    def load_storage(pid: tuple) -> _Storage:
        storage_type, key, _location, numel = pid[:4]
        if key not in storages:
            record = f"{prefix}data/{key}"
            try:
                raw = archive.read(record)
            except KeyError as exc:
                raise CheckpointFormatError(f"{path}: storage record {record} is missing") from exc
            itemsize = torch.empty((), dtype=storage_type.dtype).element_size()
            if len(raw) != numel * itemsize:
                raise CheckpointFormatError(f"{path}: storage {key} holds {len(raw)} bytes, expected "
                                            f"{numel * itemsize}")
            data = _bytes_tensor(raw)
            storages[key] = _Storage(data, storage_type.dtype)
        return _Storage(storages[key].data, storage_type.dtype)

    with archive.open(pkl[0]) as fh:
        return _unpickle(fh, load_storage, path)


_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


def _read_legacy(path: str, fh: io.BufferedIOBase) -> Any:
    """The pre-1.6 format: magic, protocol, sys_info, the object, storage keys, then each storage's bytes."""
    def no_storage(pid: tuple) -> _Storage:
        raise CheckpointFormatError(f"{path}: storage reference in a header record")

    if _unpickle(fh, no_storage, path) != _LEGACY_MAGIC:
        raise CheckpointFormatError(f"{path}: neither a torch zip checkpoint nor a legacy torch file")
    _unpickle(fh, no_storage, path)  # protocol version
    sys_info = _unpickle(fh, no_storage, path)
    if isinstance(sys_info, dict) and not sys_info.get("little_endian", True):
        raise CheckpointFormatError(f"{path}: saved on a big-endian machine; not supported")
    roots: dict[str, tuple[torch.Tensor, torch.dtype]] = {}

    def load_storage(pid: tuple) -> _Storage:
        storage_type, key, _location, numel, view = pid[:5]
        itemsize = torch.empty((), dtype=storage_type.dtype).element_size()
        if key not in roots:  # filled in place once the storage bytes are read below
            roots[key] = (torch.zeros(numel * itemsize, dtype=torch.uint8), storage_type.dtype)
        data = roots[key][0]
        if view is not None:
            _view_key, offset, view_numel = view
            data = data[offset * itemsize:(offset + view_numel) * itemsize]
        return _Storage(data, storage_type.dtype)

    obj = _unpickle(fh, load_storage, path)
    keys = _unpickle(fh, no_storage, path)
    for key in keys:
        header = fh.read(8)
        if len(header) != 8 or key not in roots:
            raise CheckpointFormatError(f"{path}: storage {key} is missing (truncated file?)")
        data, dtype = roots[key]
        (numel,) = struct.unpack("<q", header)
        raw = fh.read(data.numel())
        itemsize = torch.empty((), dtype=dtype).element_size()
        if numel * itemsize != data.numel() or len(raw) != data.numel():
            raise CheckpointFormatError(f"{path}: storage {key} is truncated or has the wrong size")
        data.copy_(_bytes_tensor(raw))
    return obj


def read_torch_pickle(path: str | os.PathLike[str]) -> Any:
    """Unpickle a ``torch.save`` file without running any code from it.

    Returns the saved object with tensors as plain CPU tensors (original dtype) and every non-allow-listed
    class as a :class:`StubObject`.

    Raises:
        FileNotFoundError: no such file.
        UnsafeCheckpointError: the pickle calls a global that is not allow-listed (named in the message).
        CheckpointFormatError: the file is corrupt, truncated, or not a torch checkpoint.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    with open(path, "rb") as fh:
        head = fh.read(4)
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                return _read_zip(path, archive)
        except zipfile.BadZipFile as exc:
            raise CheckpointFormatError(f"{path}: corrupt zip checkpoint ({exc})") from exc
    if head == b"PK\x03\x04":  # a zip whose central directory is gone: cut off while downloading or copying
        raise CheckpointFormatError(f"{path}: truncated or corrupt zip checkpoint (no central directory)")
    if not head:
        raise CheckpointFormatError(f"{path}: empty file")
    with open(path, "rb") as fh:
        return _read_legacy(path, fh)
