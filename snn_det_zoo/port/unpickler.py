"""A restricted unpickler for the authors' pickled checkpoints (Ultralytics / YOLOv5 ``torch.save`` files).

The released SpikeYOLO and EMS-YOLO weights are whole pickled model objects. An unrestricted ``torch.load``
would import ultralytics or the authors' ``models`` package and run whatever the pickle asks for; the
project never loads them that way. This reader runs no code of the file and holds four lines:

- **Nothing is called that is not on a short allow-list** of pure reconstructors (tensors from raw storage
  bytes, ``OrderedDict``, numpy arrays from checked descriptors, builtin containers), each served by a
  function of ours that checks its arguments. Every other global becomes an inert *stub* class that
  remembers its module and name; a stub may be instantiated (what pickle does for ``nn.Module`` objects)
  only when its module is one of the namespaces that hold model classes (``ultralytics``, ``models``,
  ``spikingjelly``, ``torch.nn``...). A call of anything else (``os.system``, ``builtins.eval``) is refused
  with an error naming it.
- **State is set only on objects this load created.** Pickle's state-setting opcodes (``BUILD``,
  ``SETITEM(S)``, ``APPEND(S)``, ``ADDITEMS``) may target only stubs, containers and arrays that this load
  made; aimed at a global (an allow-listed class, a storage type, a function), they are refused, so nothing
  that outlives the load can be changed. Stub classes are made per load, never shared between loads.
- **Numpy objects are rebuilt from plain, checked descriptors**: dtypes only from a list of little-endian
  numeric type codes, whose pickled state must be exactly their canonical one (numpy's own
  ``dtype.__setstate__`` is never given forged state); arrays and scalars only when their raw bytes are
  exactly as long as shape and dtype say.
- **Every allocation is bounded by what the file holds, checked before allocating**: storage records must
  be as long as declared and, all together, no longer than the file; a tensor may not declare more elements
  than its storage holds (no zero-stride expansion); a byte array opcode may not exceed the pickle; nothing
  else allocates by a count the file states. Every storage a tensor refers to must be present.

Only the package's own errors leave :func:`read_torch_pickle` (:class:`~snn_det_zoo.errors.CheckpointFormatError`,
:class:`~snn_det_zoo.errors.UnsafeCheckpointError`, :class:`~snn_det_zoo.errors.WeightsNotFoundError`), each
naming the file and the offending global, opcode or record.

Both torch file formats are read: the zip format (``data.pkl`` + ``data/<key>`` records, torch >= 1.6) and
the legacy one (a stream of pickles followed by raw storages), which is read twice: once to learn which
storages are declared and to check the storage records against them without allocating, once to build.

The pure-Python ``pickle._Unpickler`` runs the opcodes, with the opcodes that call, construct or set state
replaced by checked ones; a checkpoint's pickle is a few hundred kilobytes, so its speed does not matter.
"""

from __future__ import annotations

import _compat_pickle
import argparse
import collections
import datetime
import io
import math
import os
import pathlib
import pickle
import struct
import sys
import zipfile
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch

from ..errors import CheckpointFormatError, UnsafeCheckpointError, WeightsNotFoundError, ZooError

__all__ = [
    "CheckpointFormatError",
    "StubObject",
    "UnsafeCheckpointError",
    "read_torch_pickle",
    "stub_name",
    "stub_state",
]

# Modules whose classes may be instantiated as inert stubs: the authors' packages, SpikingJelly and torch.nn
# (pickled nn.Module objects). A prefix matches the module itself and its sub-modules.
_INERT_NAMESPACES = ("ultralytics", "models", "utils", "spikingjelly", "torch.nn")
_MAX_DIMS = 64  # torch's own limit on tensor dimensions


def _in_inert_namespace(module: str) -> bool:
    return any(module == ns or module.startswith(ns + ".") for ns in _INERT_NAMESPACES)


def _describe(obj: Any) -> str:
    """A short, safe description of an object for error messages (``repr`` of file data could be huge)."""
    if isinstance(obj, type) and issubclass(obj, StubObject):
        return f"{obj._stub_module}.{obj._stub_name}"
    if isinstance(obj, StubObject):
        return f"an instance of {obj._stub_module}.{obj._stub_name}"
    if isinstance(obj, type) or callable(obj):
        module = getattr(obj, "__module__", None) or type(obj).__module__
        return f"{module}.{getattr(obj, '__qualname__', type(obj).__qualname__)}"
    return f"an object of type {type(obj).__qualname__}"


def _short(value: Any) -> str:
    """A description of file data that costs nothing however large or nested the value is."""
    if isinstance(value, str | bytes):
        return repr(value[:40]) + ("..." if len(value) > 40 else "")
    if isinstance(value, bool | int):
        return repr(value) if value.bit_length() <= 64 else f"an integer of {value.bit_length()} bits"
    return _describe(value)


# Dict keys and set members must hash in constant time without attacker-chosen collisions: strings and bytes
# (randomised hashes), booleans, None, and integers below the hash modulus (each its own hash). Nested tuples
# hash recursively in C (a deep one crashes the interpreter, a shared one takes exponential time) and floats
# can be chosen to collide, so neither may be a key; no real checkpoint uses them as one.
_MAX_INT_KEY = (1 << 61) - 2
_MAX_NAME = 4096


def _check_key(key: Any) -> Any:
    if key is None or isinstance(key, bool):
        return key
    if isinstance(key, str | bytes):
        if len(key) > _MAX_NAME:
            raise CheckpointFormatError(f"a key of {len(key)} characters; names are at most {_MAX_NAME}")
        return key
    if isinstance(key, int) and -_MAX_INT_KEY <= key <= _MAX_INT_KEY:
        return key
    raise CheckpointFormatError(f"a dict key or set member is {_short(key)}; only strings, bytes, booleans, None "
                                "and integers below 2**61 are accepted")


class _StubMeta(type):
    """Calling a stub class (pickle's REDUCE, OBJ, INST) records the arguments instead of running anything."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        return cls.__new__(cls, *args, **kwargs)


class StubObject(metaclass=_StubMeta):
    """Stand-in for a class of the checkpoint that we neither import nor run.

    ``_stub_module``/``_stub_name`` say which class it replaces; an instance keeps the constructor arguments,
    the state pickle's ``BUILD`` gave it and any items or list elements pickle added.
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
        vars(obj).update(_stub_args=args, _stub_kwargs=kwargs, _stub_state=None, _stub_items={}, _stub_list=[])
        return obj

    def __repr__(self) -> str:
        return f"<stub {self._stub_module}.{self._stub_name}>"


def stub_name(obj: Any) -> str | None:
    """``'module.Class'`` of a stub instance, ``None`` for anything else."""
    return f"{obj._stub_module}.{obj._stub_name}" if isinstance(obj, StubObject) else None


def stub_state(obj: StubObject) -> dict[str, Any]:
    """The attribute dict a stub received (``__dict__`` part of the state; slots merged in)."""
    state = obj._stub_state
    if isinstance(state, tuple) and len(state) == 2:  # (dict state, slot state)
        merged: dict[str, Any] = {}
        for part in state:
            if isinstance(part, dict):
                merged.update(dict.items(part))
        return merged
    return state if isinstance(state, dict) else {}


# ----------------------------------------------------------------------------------------------------------
# Storages and tensors

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
    """What ``torch.HalfStorage`` etc. resolve to: a dtype tag for the persistent ids, nothing callable."""

    __slots__ = ("dtype", "itemsize", "name")

    def __init__(self, name: str, dtype: torch.dtype) -> None:
        self.name, self.dtype = name, dtype
        self.itemsize = torch.empty((), dtype=dtype).element_size()


_STORAGE_TYPES = {name: _StorageType(name, dtype) for name, dtype in _STORAGE_DTYPES.items()}


class _Storage:
    """The bytes of one storage record (a uint8 tensor), viewed with the dtype of the tensors built on it.

    ``data`` is ``None`` while the legacy reader's first pass only learns what is declared.
    """

    def __init__(self, key: str, data: torch.Tensor | None, dtype: torch.dtype, numel: int) -> None:
        self.key, self.data, self.dtype, self.numel = key, data, dtype, numel


def _check_index(value: Any, what: str) -> int:
    # Below 2**63, torch's own index type: also keeps the arithmetic on sizes cheap.
    if isinstance(value, bool) or not isinstance(value, int) or value < 0 or value.bit_length() > 63:
        raise CheckpointFormatError(f"{what} must be an integer in [0, 2**63), got {_short(value)}")
    return value


def _check_shape(values: Any, what: str) -> tuple[int, ...]:
    if not isinstance(values, tuple | list) or len(values) > _MAX_DIMS:
        raise CheckpointFormatError(f"{what} must be a tuple of at most {_MAX_DIMS} integers")
    return tuple(_check_index(v, what) for v in values)


def _rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any, *_ignored: Any) -> torch.Tensor | None:
    if not isinstance(storage, _Storage):
        raise CheckpointFormatError(f"a tensor refers to {_describe(storage)}, not to a storage record")
    offset = _check_index(offset, "a tensor's storage offset")
    size, stride = _check_shape(size, "a tensor's size"), _check_shape(stride, "a tensor's stride")
    if len(size) != len(stride):
        raise CheckpointFormatError(f"a tensor on storage {storage.key} has {len(size)} sizes but "
                                    f"{len(stride)} strides")
    numel = math.prod(size)
    # More elements than the storage holds can only come from overlapping (e.g. zero) strides: a few bytes
    # of file would become an arbitrarily large tensor once copied.
    if numel > storage.numel:
        raise CheckpointFormatError(f"a tensor of size {size} declares {numel} elements on storage "
                                    f"{storage.key}, which holds {storage.numel}")
    extent = offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True)) + 1 if numel else 0
    if extent > storage.numel:
        raise CheckpointFormatError(f"a tensor of size {size} at offset {offset} overruns storage "
                                    f"{storage.key} of {storage.numel} elements")
    if storage.data is None:  # the legacy reader's first pass: only the declarations matter
        return None
    flat = storage.data.view(storage.dtype) if storage.numel else torch.empty(0, dtype=storage.dtype)
    # A legacy view is a slice of its root storage: offsets count from the start of the slice.
    return flat.as_strided(size, stride, flat.storage_offset() + offset)


def _rebuild_parameter(data: Any, *_ignored: Any) -> Any:
    # Only the values matter for a state dict; requires_grad, hooks and extra parameter state are dropped.
    if data is not None and not isinstance(data, torch.Tensor):
        raise CheckpointFormatError(f"a parameter wraps {_describe(data)}, not a tensor")
    return data


def _rebuild_from_type_v2(func: Any, new_type: Any, args: Any, state: Any) -> Any:
    if func not in (_rebuild_tensor, _rebuild_parameter):
        raise UnsafeCheckpointError("the checkpoint asks torch._tensor._rebuild_from_type_v2 to call "
                                    f"{_describe(func)}, which is not allow-listed")
    if new_type is not torch.Tensor or not isinstance(args, tuple):
        raise CheckpointFormatError(f"torch._tensor._rebuild_from_type_v2 got type {_describe(new_type)}")
    return func(*args)


def _torch_size(values: Any = ()) -> torch.Size:
    return torch.Size(_check_shape(values, "torch.Size"))


def _torch_device(spec: Any, index: Any = None) -> torch.device:
    if not isinstance(spec, str) or (index is not None and not isinstance(index, int)):
        raise CheckpointFormatError("torch.device takes a string and an optional integer index")
    return torch.device(spec) if index is None else torch.device(spec, index)


# ----------------------------------------------------------------------------------------------------------
# Numpy, from checked descriptors only

# Type codes as numpy pickles them (``dtype.__reduce__``); no object, string, void, datetime or structured
# dtype, whose state numpy would trust.
_NUMPY_CODES = frozenset({"b1", "i1", "u1", "i2", "u2", "i4", "u4", "i8", "u8", "f2", "f4", "f8", "c8", "c16"})


def _numpy_dtype(code: Any, align: Any = False, copy: Any = False) -> np.dtype:
    if not isinstance(code, str) or code not in _NUMPY_CODES:
        raise UnsafeCheckpointError(f"numpy dtype {_short(code)} is not one of the allow-listed numeric types "
                                    f"{sorted(_NUMPY_CODES)}")
    if align is not False or not isinstance(copy, bool):
        raise CheckpointFormatError(f"numpy dtype {code} has unexpected flags (align={_short(align)})")
    return np.dtype(code)  # numpy's shared instance; its state is checked, never set (see _build_dtype)


def _canonical_dtype_states(dtype: np.dtype) -> tuple[tuple, ...]:
    state = dtype.__reduce__()[2]
    native = (state[0], "=", *state[2:])  # an old numpy writes '=' for the machine's own byte order
    return (state, native) if state[1] == "<" and sys.byteorder == "little" else (state,)


def _build_dtype(dtype: np.dtype, state: Any) -> None:
    if not isinstance(state, tuple) or state not in _canonical_dtype_states(dtype):
        raise UnsafeCheckpointError(f"numpy dtype {dtype.str} comes with forged state (only its canonical "
                                    "little-endian state is accepted)")


def _check_numpy_dtype(dtype: Any, what: str) -> np.dtype:
    # Only dtypes built by _numpy_dtype (or numpy's own instances of the same codes) may describe data.
    if not isinstance(dtype, np.dtype) or dtype.str.lstrip("<|") not in _NUMPY_CODES or dtype.str[0] == ">":
        raise UnsafeCheckpointError(f"{what} has dtype {_describe(dtype)}; only allow-listed little-endian "
                                    "numeric dtypes are accepted")
    return dtype


def _numpy_reconstruct(subtype: Any, shape: Any, typecode: Any) -> np.ndarray:
    if subtype is not np.ndarray:
        raise UnsafeCheckpointError(f"numpy array subclass {_describe(subtype)} is not allow-listed")
    if shape != (0,) or typecode not in (b"b", "b"):
        raise CheckpointFormatError("numpy _reconstruct with other arguments than numpy itself writes")
    return np.ndarray.__new__(np.ndarray, (0,), np.int8)  # empty; BUILD fills it (see _build_array)


def _build_array(array: np.ndarray, state: Any) -> None:
    if array.size or not isinstance(state, tuple) or len(state) != 5:
        raise CheckpointFormatError("a numpy array is built twice, or its state is not numpy's 5-tuple")
    version, shape, dtype, fortran, raw = state
    shape = _check_shape(shape, "a numpy array's shape")
    dtype = _check_numpy_dtype(dtype, "a numpy array")
    if version != 1 or not isinstance(fortran, bool) or not isinstance(raw, bytes | bytearray):
        raise CheckpointFormatError("a numpy array's state is not (1, shape, dtype, fortran, bytes)")
    if len(raw) != math.prod(shape) * dtype.itemsize:
        raise CheckpointFormatError(f"a numpy array of shape {shape} and dtype {dtype.str} comes with "
                                    f"{len(raw)} bytes, expected {math.prod(shape) * dtype.itemsize}")
    array.__setstate__((1, shape, dtype, fortran, bytes(raw)))  # every field checked above


def _numpy_scalar(dtype: Any, data: Any = None) -> Any:
    dtype = _check_numpy_dtype(dtype, "a numpy scalar")
    if not isinstance(data, bytes) or len(data) != dtype.itemsize:
        raise CheckpointFormatError(f"a numpy {dtype.str} scalar needs {dtype.itemsize} bytes")
    return np.frombuffer(data, dtype=dtype, count=1)[0]


# ----------------------------------------------------------------------------------------------------------
# Plain constructors

_PLAIN = (list, tuple, dict, set, frozenset, str, bytes, collections.OrderedDict)


def _container(kind: type) -> Callable[..., Any]:
    """``kind(iterable)`` for plain containers only (iterating a tensor would multiply its memory), with the
    keys or members checked before anything is hashed."""
    def build(items: Any = ()) -> Any:
        if not isinstance(items, _PLAIN):
            raise CheckpointFormatError(f"{kind.__name__}() of {_describe(items)}; only plain containers")
        if kind in (dict, collections.OrderedDict):
            pairs = dict.items(items) if isinstance(items, dict) else items
            checked = []
            for pair in pairs:
                if not isinstance(pair, tuple | list) or len(pair) != 2:
                    raise CheckpointFormatError(f"{kind.__name__}() of an item that is not a (key, value) pair")
                checked.append((_check_key(pair[0]), pair[1]))
            return kind(checked)
        if kind in (set, frozenset):
            return kind(_check_key(item) for item in items)
        return kind(items)

    build.__name__ = kind.__name__
    return build


def _bytearray(data: Any = b"") -> bytearray:
    if not isinstance(data, bytes | bytearray):  # bytearray(n) would allocate n bytes the file never held
        raise CheckpointFormatError("bytearray() of anything but bytes")
    return bytearray(data)


def _codecs_encode(text: Any, encoding: Any = "utf-8") -> bytes:
    # Protocol-2 pickles store bytes as _codecs.encode(str, 'latin1').
    known = isinstance(encoding, str) and encoding.lower().replace("-", "").replace("_", "") in ("latin1", "utf8")
    if not isinstance(text, str) or not known:
        raise CheckpointFormatError(f"_codecs.encode of {_describe(text)} with encoding {_short(encoding)}")
    return text.encode(encoding)


def _scalar_args(kind: Callable[..., Any], types: tuple[type, ...]) -> Callable[..., Any]:
    """``kind(*args)`` when every argument is a plain scalar (paths, dates, slices, complex numbers)."""
    def build(*args: Any) -> Any:
        if not all(isinstance(a, types) for a in args):
            raise CheckpointFormatError(f"{kind.__name__}() with other than {[t.__name__ for t in types]}")
        return kind(*args)

    build.__name__ = kind.__name__
    return build


def _copyreg_reconstructor(cls: Any, base: Any, state: Any) -> Any:
    # Protocol 0/1 pickles build plain objects this way; only stubs and namespaces may be built.
    stub = isinstance(cls, type) and issubclass(cls, StubObject)
    if not (stub or cls is argparse.Namespace) or base is not object or state is not None:
        raise UnsafeCheckpointError(f"copyreg._reconstructor asked to build {_describe(cls)} from "
                                    f"{_describe(base)}")
    return cls.__new__(cls)


_SCALARS = (int, float, str, bytes, type(None))

# Globals the pickle may call (REDUCE, OBJ, INST), each a checking function of ours.
_CALLS: dict[tuple[str, str], Callable[..., Any]] = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
    ("torch.nn.parameter", "Parameter"): _rebuild_parameter,
    ("torch", "device"): _torch_device,
    ("torch", "Size"): _torch_size,
    ("collections", "OrderedDict"): _container(collections.OrderedDict),
    ("builtins", "set"): _container(set),
    ("builtins", "frozenset"): _container(frozenset),
    ("builtins", "list"): _container(list),
    ("builtins", "dict"): _container(dict),
    ("builtins", "tuple"): _container(tuple),
    ("builtins", "bytearray"): _bytearray,
    ("builtins", "slice"): _scalar_args(slice, _SCALARS),
    ("builtins", "complex"): _scalar_args(complex, (int, float, str)),
    ("_codecs", "encode"): _codecs_encode,
    ("copyreg", "_reconstructor"): _copyreg_reconstructor,
    ("pathlib", "PosixPath"): _scalar_args(pathlib.PurePosixPath, (str,)),
    ("pathlib", "PurePosixPath"): _scalar_args(pathlib.PurePosixPath, (str,)),
    ("pathlib", "WindowsPath"): _scalar_args(pathlib.PureWindowsPath, (str,)),
    ("pathlib", "PureWindowsPath"): _scalar_args(pathlib.PureWindowsPath, (str,)),
    ("pathlib", "Path"): _scalar_args(pathlib.PurePath, (str,)),
    ("datetime", "datetime"): _scalar_args(datetime.datetime, (int, bytes, str)),
    ("datetime", "date"): _scalar_args(datetime.date, (int, bytes, str)),
    ("datetime", "timedelta"): _scalar_args(datetime.timedelta, (int, float)),
    ("numpy", "dtype"): _numpy_dtype,
}
for _np_core in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _CALLS[(_np_core, "_reconstruct")] = _numpy_reconstruct
    _CALLS[(_np_core, "scalar")] = _numpy_scalar

# Globals the pickle may only refer to, as arguments of the calls above.
_VALUES: dict[tuple[str, str], Any] = {
    ("torch", "Tensor"): torch.Tensor,
    ("builtins", "object"): object,
    ("argparse", "Namespace"): argparse.Namespace,  # created by NEWOBJ or copyreg._reconstructor only
    ("numpy", "ndarray"): np.ndarray,
    **{("torch", name): storage_type for name, storage_type in _STORAGE_TYPES.items()},
}
for _dtype in (torch.float64, torch.float32, torch.float16, torch.bfloat16, torch.int64, torch.int32,
               torch.int16, torch.int8, torch.uint8, torch.bool):
    _VALUES[("torch", str(_dtype).removeprefix("torch."))] = _dtype

# Classes pickle's NEWOBJ may create (an empty instance, filled by BUILD / SETITEMS / APPENDS), found by the
# object the pickle's global resolves to.
_NEWOBJ_TYPES: dict[int, tuple[Any, type]] = {
    id(found): (found, kind) for found, kind in (
        (argparse.Namespace, argparse.Namespace),
        (_CALLS[("collections", "OrderedDict")], collections.OrderedDict),
        (_CALLS[("builtins", "dict")], dict), (_CALLS[("builtins", "list")], list), (_CALLS[("builtins", "set")], set),
    )
}
# types.SimpleNamespace comes back as argparse.Namespace: the same attribute bag, no import of types needed.
_ALIASES = {("types", "SimpleNamespace"): ("argparse", "Namespace")}


# ----------------------------------------------------------------------------------------------------------
# The unpickler


class _BoundedReader:
    """The bytes ``[start, end)`` of a file; no read asks the file for more than is left (no big buffers)."""

    def __init__(self, fh: io.BufferedIOBase, start: int, end: int) -> None:
        self._fh, self._end = fh, end
        fh.seek(start)

    def remaining(self) -> int:
        return max(0, self._end - self._fh.tell())

    def read(self, n: int = -1) -> bytes:
        return self._fh.read(self.remaining() if n is None or n < 0 else min(n, self.remaining()))

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer)[: self.remaining()]
        return self._fh.readinto(view)

    def readline(self) -> bytes:
        return self._fh.readline(self.remaining())


class _RestrictedUnpickler(pickle._Unpickler):
    """Resolves globals through the allow-lists or to per-load stubs; checks every call and state change."""

    dispatch: ClassVar[dict[int, Callable[[Any], None]]] = dict(pickle._Unpickler.dispatch)

    def __init__(self, reader: _BoundedReader, load_storage: Callable[[tuple], _Storage], limit: int) -> None:
        super().__init__(reader, encoding="latin1")
        self._load_storage = load_storage
        self._limit = limit  # bytes of this pickle: no single opcode may allocate more
        # What allow-listed calls may build in all (elements, bytes, characters): each copies what the pickle
        # spells out once, so a legitimate file stays below its own size; copying one shared object N times
        # would not.
        self._construction_budget = limit + (1 << 20)
        self._created: dict[int, Any] = {}  # id -> object, for everything this load made (kept alive)
        self._stubs: dict[tuple[str, str], type[StubObject]] = {}
        self._calls = {id(f): f for f in _CALLS.values()}
        self._names: dict[int, str] = {}  # id of a global -> the name the pickle gave it, for messages

    # -- globals ------------------------------------------------------------------------------------------
    def find_class(self, module: str, name: str) -> Any:
        # Python-2 era names (protocol <= 2 writes __builtin__.set); pickle's own find_class maps these too.
        module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        module, name = _ALIASES.get((module, name), (module, name))
        key = (module, name)
        found = _CALLS.get(key, _VALUES.get(key))
        if found is None:
            if key not in self._stubs:
                inert = _in_inert_namespace(module)
                attrs = {"_stub_module": module, "_stub_name": name, "_stub_allowed": inert}
                self._stubs[key] = _StubMeta(name, (StubObject,), attrs)
            found = self._stubs[key]
        self._names.setdefault(id(found), f"global {module}.{name}")
        return found

    def persistent_load(self, pid: Any) -> Any:
        if not isinstance(pid, tuple) or not pid:
            raise CheckpointFormatError(f"unexpected persistent id of type {type(pid).__name__}")
        kind = pid[0].decode("ascii") if isinstance(pid[0], bytes) else pid[0]
        if kind == "module":  # legacy files: (module, class, source file, source); the class is a global
            if len(pid) < 2:
                raise CheckpointFormatError("a legacy module record without its class")
            return pid[1]
        if kind != "storage":
            raise CheckpointFormatError(f"unknown persistent id type {_short(kind)}")
        if len(pid) < 5 or not isinstance(pid[1], _StorageType):
            raise UnsafeCheckpointError(f"storage reference to {_describe(pid[1] if len(pid) > 1 else None)}, "
                                        "which is not an allow-listed torch storage type")
        return self._made(self._load_storage(pid[1:]))

    # -- bookkeeping --------------------------------------------------------------------------------------
    def _made(self, obj: Any) -> Any:
        self._created[id(obj)] = obj
        return obj

    def _name(self, obj: Any) -> str:
        return self._names.get(id(obj)) or _describe(obj)

    def _own(self, obj: Any, opcode: str) -> Any:
        if self._created.get(id(obj)) is not obj:
            raise UnsafeCheckpointError(f"the checkpoint's {opcode} opcode changes {self._name(obj)}, which this "
                                        "load did not create (it would outlive the load)")
        return obj

    def _check_call(self, func: Any, opcode: str) -> None:
        stub = isinstance(func, type) and issubclass(func, StubObject) and self._stubs.get(
            (func._stub_module, func._stub_name)) is func
        if not stub and self._calls.get(id(func)) is not func:
            raise UnsafeCheckpointError(f"the checkpoint's {opcode} opcode calls {self._name(func)}, which is "
                                        "not allow-listed")

    # -- opcodes that call --------------------------------------------------------------------------------
    def _charge(self, built: Any) -> Any:
        if isinstance(built, list | tuple | dict | set | frozenset | bytes | bytearray | str):
            size = len(built)
        elif isinstance(built, pathlib.PurePath):
            size = len(str(built))
        else:
            size = 1
        self._construction_budget -= size
        if self._construction_budget < 0:
            raise CheckpointFormatError(f"the allow-listed calls build more than the pickle of {self._limit} bytes "
                                        "spells out (one object copied over and over)")
        return built

    def load_reduce(self) -> None:
        args = self.stack.pop()
        func = self.stack[-1]
        self._check_call(func, "REDUCE")
        if not isinstance(args, tuple):
            raise CheckpointFormatError("REDUCE without an argument tuple")
        self.stack[-1] = self._made(self._charge(func(*args)))

    def _instantiate(self, klass: Any, args: list) -> None:  # OBJ and INST
        self._check_call(klass, "OBJ/INST")
        self.append(self._made(self._charge(klass(*args))))

    def _newobj(self, cls: Any, args: Any, kwargs: Any) -> None:
        stub = isinstance(cls, type) and issubclass(cls, StubObject)
        if not isinstance(args, tuple) or not isinstance(kwargs, dict):
            raise CheckpointFormatError("NEWOBJ without an argument tuple")
        if stub:
            self._check_call(cls, "NEWOBJ")
            self.append(self._made(cls.__new__(cls, *args, **kwargs)))
            return
        found, kind = _NEWOBJ_TYPES.get(id(cls), (None, None))
        if found is not cls or kind is None or args or kwargs:
            raise UnsafeCheckpointError(f"the checkpoint's NEWOBJ opcode creates {self._name(cls)}, which is "
                                        "not allow-listed")
        self.append(self._made(kind.__new__(kind)))

    def load_newobj(self) -> None:
        args = self.stack.pop()
        self._newobj(self.stack.pop(), args, {})

    def load_newobj_ex(self) -> None:
        kwargs = self.stack.pop()
        args = self.stack.pop()
        self._newobj(self.stack.pop(), args, kwargs)

    # -- opcodes that set state ---------------------------------------------------------------------------
    def load_build(self) -> None:
        state = self.stack.pop()
        inst = self.stack[-1]
        if isinstance(inst, np.dtype):  # numpy's dtypes are shared instances: checked, never set
            _build_dtype(inst, state)
            return
        self._own(inst, "BUILD")
        if isinstance(inst, StubObject):
            if inst._stub_state is not None:
                raise CheckpointFormatError(f"{_describe(inst)} is given its state twice")
            inst._stub_state = state
        elif isinstance(inst, argparse.Namespace | collections.OrderedDict):
            names = dict.keys(state) if isinstance(state, dict) else ()
            # An OrderedDict carries only a state dict's _metadata: any other name (items, keys, get) would
            # shadow its methods for whoever reads it next.
            allowed = ("_metadata",) if isinstance(inst, collections.OrderedDict) else None
            if not isinstance(state, dict) or not all(
                isinstance(k, str) and len(k) <= 256 and not k.startswith("__") and (allowed is None or k in allowed)
                for k in names
            ):
                raise CheckpointFormatError(f"the state of {_describe(inst)} may only be a dict of attribute names"
                                            + (" (_metadata)" if allowed else ""))
            vars(inst).update(state)
        elif type(inst) is np.ndarray:
            _build_array(inst, state)
            if isinstance(state[4], bytearray):  # numpy keeps bytes as they are but copies a bytearray
                self._charge(state[4])
        else:
            raise UnsafeCheckpointError(f"the checkpoint's BUILD opcode sets the state of {self._name(inst)}, "
                                        "which is not allow-listed")

    def _items_target(self, opcode: str, kinds: tuple[type, ...]) -> Any:
        target = self._own(self.stack[-1], opcode)
        if not isinstance(target, kinds):
            raise UnsafeCheckpointError(f"the checkpoint's {opcode} opcode targets {self._name(target)}")
        return target

    def _set_items(self, items: list) -> None:
        target = self._items_target("SETITEM", (dict, StubObject))
        store = target._stub_items if isinstance(target, StubObject) else target
        if len(items) % 2:
            raise CheckpointFormatError("SETITEMS with a key but no value")
        for i in range(0, len(items), 2):
            store[_check_key(items[i])] = items[i + 1]  # a dict or OrderedDict of this load

    def load_setitem(self) -> None:
        value = self.stack.pop()
        key = self.stack.pop()
        self._set_items([key, value])

    def load_setitems(self) -> None:
        self._set_items(self.pop_mark())

    def _append_items(self, items: list) -> None:
        target = self._items_target("APPEND", (list, StubObject))
        (target._stub_list if isinstance(target, StubObject) else target).extend(items)

    def load_append(self) -> None:
        self._append_items([self.stack.pop()])

    def load_appends(self) -> None:
        self._append_items(self.pop_mark())

    def load_additems(self) -> None:
        items = self.pop_mark()
        self._items_target("ADDITEMS", (set,)).update(_check_key(item) for item in items)

    def load_dict(self) -> None:
        items = self.pop_mark()
        if len(items) % 2:
            raise CheckpointFormatError("DICT with a key but no value")
        self.append(self._made({_check_key(items[i]): items[i + 1] for i in range(0, len(items), 2)}))

    def load_frozenset(self) -> None:
        self.append(frozenset(_check_key(item) for item in self.pop_mark()))

    # -- opcodes that allocate or reach outside the pickle ------------------------------------------------
    def load_bytearray8(self) -> None:
        (length,) = struct.unpack("<Q", self.read(8))
        if length > self._limit:
            raise CheckpointFormatError(f"BYTEARRAY8 of {length} bytes in a pickle of {self._limit}")
        data = self.read(length)
        if len(data) != length:
            raise CheckpointFormatError("BYTEARRAY8 runs past the end of the pickle")
        self.append(self._made(bytearray(data)))


def _registering(loader: Callable[[Any], None]) -> Callable[[Any], None]:
    """A container opcode's loader that also records the new container as made by this load."""
    def load(self: _RestrictedUnpickler) -> None:
        loader(self)
        self._made(self.stack[-1])

    return load


def _refused(opname: str) -> Callable[[Any], None]:
    def load(self: _RestrictedUnpickler) -> None:
        raise UnsafeCheckpointError(f"the checkpoint uses pickle's {opname} opcode, which torch checkpoints "
                                    "never contain")

    return load


_base = pickle._Unpickler.dispatch
_RestrictedUnpickler.dispatch.update({
    pickle.REDUCE[0]: _RestrictedUnpickler.load_reduce,
    pickle.NEWOBJ[0]: _RestrictedUnpickler.load_newobj,
    pickle.NEWOBJ_EX[0]: _RestrictedUnpickler.load_newobj_ex,
    pickle.BUILD[0]: _RestrictedUnpickler.load_build,
    pickle.SETITEM[0]: _RestrictedUnpickler.load_setitem,
    pickle.SETITEMS[0]: _RestrictedUnpickler.load_setitems,
    pickle.APPEND[0]: _RestrictedUnpickler.load_append,
    pickle.APPENDS[0]: _RestrictedUnpickler.load_appends,
    pickle.ADDITEMS[0]: _RestrictedUnpickler.load_additems,
    pickle.DICT[0]: _RestrictedUnpickler.load_dict,
    pickle.FROZENSET[0]: _RestrictedUnpickler.load_frozenset,
    pickle.BYTEARRAY8[0]: _RestrictedUnpickler.load_bytearray8,
    # EXT codes go through copyreg's process-wide registry and cache; text persistent ids are not torch's.
    pickle.EXT1[0]: _refused("EXT1"),
    pickle.EXT2[0]: _refused("EXT2"),
    pickle.EXT4[0]: _refused("EXT4"),
    pickle.PERSID[0]: _refused("PERSID"),
    **{op[0]: _registering(_base[op[0]])
       for op in (pickle.EMPTY_DICT, pickle.EMPTY_LIST, pickle.LIST, pickle.EMPTY_SET)},
})
del _base


def _unpickle(reader: _BoundedReader, load_storage: Callable[[tuple], _Storage], limit: int) -> Any:
    return _RestrictedUnpickler(reader, load_storage, limit).load()


def _storage_pid(pid: tuple) -> tuple[_StorageType, str, int]:
    storage_type, key, _location, numel = pid[:4]
    if not isinstance(key, str) or not 0 < len(key) <= 64:
        raise CheckpointFormatError(f"a storage reference whose key is {_short(key)}, not a short string")
    return storage_type, key, _check_index(numel, f"storage {key}'s element count")


class _Budget:
    """Bytes of storage allocated so far; the sum may not exceed the size of the file."""

    def __init__(self, path: str, size: int) -> None:
        self.path, self.size, self.used = path, size, 0

    def take(self, nbytes: int, what: str) -> None:
        if self.used + nbytes > self.size:
            raise CheckpointFormatError(f"{what} declares {nbytes} bytes, more than the file of {self.size} "
                                        "bytes holds besides what is already read")
        self.used += nbytes


# ----------------------------------------------------------------------------------------------------------
# The zip format (torch >= 1.6)


def _read_record(archive: zipfile.ZipFile, name: str, budget: _Budget, expected: int | None = None) -> bytearray:
    try:
        info = archive.getinfo(name)
    except KeyError as exc:
        raise CheckpointFormatError(f"record {name} is missing") from exc
    # torch writes every record uncompressed; a compressed one may inflate far beyond its declared size
    # before zipfile cuts it (bzip2 and LZMA streams are decompressed a whole input block at a time).
    if info.compress_type != zipfile.ZIP_STORED:
        raise CheckpointFormatError(f"record {name} is compressed (zip method {info.compress_type}); torch "
                                    "checkpoints store their records uncompressed")
    if expected is not None and info.file_size != expected:
        raise CheckpointFormatError(f"record {name} holds {info.file_size} bytes, expected {expected}")
    budget.take(info.file_size, f"record {name}")  # checked before allocating; zip bombs stop here
    buffer = bytearray(info.file_size)
    with archive.open(info) as fh:
        if fh.readinto(buffer) != info.file_size or fh.read(1):
            raise CheckpointFormatError(f"record {name} is shorter or longer than its {info.file_size} bytes")
    return buffer


def _read_zip(path: str, archive: zipfile.ZipFile, size: int) -> Any:
    names = archive.namelist()
    pkl = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
    if len(pkl) != 1:
        raise CheckpointFormatError("a zip file without exactly one <archive>/data.pkl record; "
                                    "not a torch checkpoint")
    prefix = pkl[0][: -len("data.pkl")]
    budget = _Budget(path, size)
    if prefix + "byteorder" in names:
        order = bytes(_read_record(archive, prefix + "byteorder", budget))
        if order not in (b"little", b"big"):
            raise CheckpointFormatError(f"record {prefix}byteorder holds {order[:20]!r}")
        if order != b"little":
            raise CheckpointFormatError("saved on a big-endian machine; only little-endian checkpoints are "
                                        "supported")
    storages: dict[str, _Storage] = {}

    def load_storage(pid: tuple) -> _Storage:
        storage_type, key, numel = _storage_pid(pid)
        if key not in storages:
            raw = _read_record(archive, f"{prefix}data/{key}", budget, numel * storage_type.itemsize)
            storages[key] = _Storage(key, torch.frombuffer(raw, dtype=torch.uint8) if raw else
                                     torch.empty(0, dtype=torch.uint8), storage_type.dtype, numel)
        first = storages[key]
        nbytes = numel * storage_type.itemsize
        if nbytes != first.data.numel():
            raise CheckpointFormatError(f"storage {key} is referred to with {nbytes} bytes and with "
                                        f"{first.data.numel()}")
        return _Storage(key, first.data, storage_type.dtype, numel)

    pickle_bytes = _read_record(archive, pkl[0], budget)
    stream = io.BytesIO(pickle_bytes)
    return _unpickle(_BoundedReader(stream, 0, len(pickle_bytes)), load_storage, len(pickle_bytes))


# ----------------------------------------------------------------------------------------------------------
# The legacy format (torch < 1.6)

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


def _no_storage(pid: tuple) -> _Storage:
    raise CheckpointFormatError("a storage reference in a header record")


def _legacy_headers(fh: io.BufferedIOBase, size: int) -> _BoundedReader:
    reader = _BoundedReader(fh, 0, size)
    if _unpickle(reader, _no_storage, size) != _LEGACY_MAGIC:
        raise CheckpointFormatError("neither a torch zip checkpoint nor a legacy torch file")
    _unpickle(reader, _no_storage, size)  # protocol version
    sys_info = _unpickle(reader, _no_storage, size)
    if isinstance(sys_info, dict) and not dict.get(sys_info, "little_endian", True):
        raise CheckpointFormatError("saved on a big-endian machine; not supported")
    return reader


def _legacy_storage(pid: tuple, declared: dict[str, tuple[_StorageType, int]],
                    data: dict[str, torch.Tensor] | None) -> _Storage:
    if len(pid) != 5:
        raise CheckpointFormatError("a legacy storage reference without its view record")
    storage_type, key, numel = _storage_pid(pid)
    view = pid[4]
    if declared.setdefault(key, (storage_type, numel)) != (storage_type, numel):
        raise CheckpointFormatError(f"storage {key} is declared twice, differently")
    itemsize = storage_type.itemsize
    offset, count = 0, numel
    if view is not None:  # (view key, offset, numel) into the root storage, in elements
        if not isinstance(view, tuple) or len(view) != 3:
            raise CheckpointFormatError(f"storage {key} has a malformed view record")
        offset = _check_index(view[1], f"storage {key}'s view offset")
        count = _check_index(view[2], f"storage {key}'s view size")
        if offset + count > numel:
            raise CheckpointFormatError(f"a view of {count} elements at {offset} overruns storage {key}")
    raw = None if data is None else data[key][offset * itemsize:(offset + count) * itemsize]
    return _Storage(key, raw, storage_type.dtype, count)


def _read_legacy(path: str, fh: io.BufferedIOBase, size: int) -> Any:
    """The pre-1.6 format: magic, protocol, sys_info, the object, storage keys, then each storage's bytes."""
    declared: dict[str, tuple[_StorageType, int]] = {}
    # First pass: what the object declares, and where each storage's bytes lie; nothing is allocated.
    reader = _legacy_headers(fh, size)
    _unpickle(reader, lambda pid: _legacy_storage(pid, declared, None), size)
    keys = _unpickle(reader, _no_storage, size)
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise CheckpointFormatError("the storage key list is not a list of strings")
    offsets: dict[str, int] = {}
    budget = _Budget(path, size)
    for key in keys:
        header = reader.read(8)
        if len(header) != 8:
            raise CheckpointFormatError(f"storage {key} is missing (the file ends at byte {fh.tell()})")
        (numel,) = struct.unpack("<q", header)
        if key not in declared or key in offsets:
            raise CheckpointFormatError(f"storage record {key} is not declared by the object, or appears twice")
        storage_type, expected = declared[key]
        nbytes = numel * storage_type.itemsize
        if numel != expected or nbytes > reader.remaining():
            raise CheckpointFormatError(f"storage {key} holds {numel} elements of the {expected} declared, or "
                                        f"runs past the end of the file (truncated?)")
        budget.take(nbytes, f"storage {key}")
        offsets[key] = fh.tell()
        fh.seek(nbytes, os.SEEK_CUR)
    missing = sorted(set(declared) - set(offsets))
    if missing:
        raise CheckpointFormatError(f"storage(s) {missing[:5]} are referred to but not in the file")
    # Second pass: read each storage's bytes, now known to be in the file, and build the object.
    data: dict[str, torch.Tensor] = {}
    for key, offset in offsets.items():
        storage_type, numel = declared[key]
        buffer = bytearray(numel * storage_type.itemsize)
        fh.seek(offset)
        if fh.readinto(buffer) != len(buffer):
            raise CheckpointFormatError(f"storage {key} is truncated")
        data[key] = torch.frombuffer(buffer, dtype=torch.uint8) if buffer else torch.empty(0, dtype=torch.uint8)
    reader = _legacy_headers(fh, size)
    return _unpickle(reader, lambda pid: _legacy_storage(pid, declared, data), size)


# ----------------------------------------------------------------------------------------------------------


def read_torch_pickle(path: str | os.PathLike[str]) -> Any:
    """Unpickle a ``torch.save`` file without running any code from it.

    Returns the saved object with tensors as plain CPU tensors (original dtype) and every non-allow-listed
    class as a :class:`StubObject`.

    Raises:
        WeightsNotFoundError: no such file.
        UnsafeCheckpointError: the pickle calls a global that is not allow-listed, or changes an object this
            load did not create (named in the message).
        CheckpointFormatError: the file is corrupt, truncated, inconsistent, or not a torch checkpoint.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise WeightsNotFoundError(f"checkpoint file not found: {path}")
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as fh:
            head = fh.read(4)
            if not head:
                raise CheckpointFormatError("empty file")
            if zipfile.is_zipfile(fh):
                with zipfile.ZipFile(fh) as archive:
                    return _read_zip(path, archive, size)
            if head == b"PK\x03\x04":  # a zip whose central directory is gone: cut off in transfer
                raise CheckpointFormatError("truncated or corrupt zip checkpoint (no central directory)")
            return _read_legacy(path, fh, size)
    except ZooError as exc:
        raise type(exc)(f"{path}: {exc}") from exc
    except Exception as exc:  # whatever a hostile file provokes leaves as the zoo's own error
        raise CheckpointFormatError(f"{path}: cannot read the pickled checkpoint ({type(exc).__name__}: "
                                    f"{str(exc)[:200]}); the file may be truncated or corrupt") from exc
