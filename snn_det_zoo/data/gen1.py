"""Readers (and a writer) for the Prophesee Gen1 files: ``*_td.dat`` events and ``*_bbox.npy`` labels.

The ``.dat`` layout (prophesee-automotive-dataset-toolbox, ``src/io/dat_events_tools.py``): a text header of
lines starting with ``"% "`` (``% Height 240``, ``% Width 304``, ...), then one byte event type (0 = Event2D)
and one byte event size (8), then little-endian records of two 32-bit words: the timestamp in microseconds and
a packed word with x in bits 0-13, y in bits 14-27 and the polarity in bit 28. Files written before the header
existed have neither header nor the two type/size bytes.

Records are decoded by ``_dat_decode.c``, compiled at first use by :mod:`snn_det_zoo._native` and loaded with
ctypes: one pass that writes each 13-byte ``EVENT_DTYPE`` record in two stores and checks the coordinates
(and, on a full read, the order of the timestamps) on the way. Where no C compiler works, the NumPy path
runs instead, with the same output and the same errors (tested), every step on contiguous 64-bit words and
each output field written once. Both take the records in chunks of :data:`_CHUNK` that stay in the CPU cache:
a few from the memory map, many streamed with ``readinto`` into one reused buffer. A time window is found by
binary search on the memory-mapped timestamps, so reading 250 ms of a one-hour recording touches only that
part of the file; the search is only right on sorted timestamps, so the first window read of a
:class:`DatFile` checks the order of the whole file once (cached on the object).

A bad event stops the read with a :class:`DataFormatError` naming the file, the event and its byte offset:
the first event, in file order, whose timestamp goes back or whose x or y lies outside the header's sensor
size (checked in that order at one event).
"""

from __future__ import annotations

import bisect
import ctypes
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from .._atomic import atomic_open
from .._native import load_library
from ..constants import GEN1_HEIGHT, GEN1_WIDTH
from ..errors import DataFormatError, DataNotFoundError, InvalidArgumentError
from ..labels import BBOX_DTYPE, GEN1_NUM_CLASSES, first_bad_box

__all__ = [
    "EVENT_DTYPE",
    "DatFile",
    "DatHeader",
    "decoder_unavailable_reason",
    "read_boxes",
    "read_dat",
    "write_dat",
]

# What read_dat returns: one record per event.
EVENT_DTYPE = np.dtype([("t", "<i8"), ("x", "<u2"), ("y", "<u2"), ("p", "<u1")])
_RAW_DTYPE = np.dtype([("t", "<u4"), ("packed", "<u4")])  # the on-disk Event2D record
_EVENT2D = 0
_X_MASK, _Y_SHIFT, _Y_MASK, _P_SHIFT = 0x3FFF, 14, 0x3FFF, 28
_MAX_HEADER_BYTES = 1 << 20  # a real header is a few hundred bytes; this bounds the scan of a garbage file
_CHUNK = 1 << 16  # events per decoding step: 512 KiB per temporary, which stays in the cache
_WORD = np.dtype("<u8")  # one record read whole: t | packed << 32
# Two views of EVENT_DTYPE's 13 bytes that cover a record in two 64-bit stores: ``t`` (bytes 0-7), then
# ``tail`` (bytes 5-12: t's zero high bytes 5-7 again, x, y, p) = x << 24 | y << 40 | p << 56.
_T_VIEW = np.dtype({"names": ["t"], "formats": ["<i8"], "offsets": [0], "itemsize": EVENT_DTYPE.itemsize})
_TAIL_VIEW = np.dtype({"names": ["tail"], "formats": ["<u8"], "offsets": [5], "itemsize": EVENT_DTYPE.itemsize})
# Where x, y and p land in the tail, and the shift that moves each there from the on-disk word.
_TAIL_FIELDS = (("x", 24, 32 - 24, _X_MASK), ("y", 40, 32 + _Y_SHIFT - 40, _Y_MASK), ("p", 56, 32 + _P_SHIFT - 56, 1))

_DECODER_SOURCE = Path(__file__).with_name("_dat_decode.c")
_DECODER_FLAGS = ("-O3", "-std=gnu11")
_CHECK_ORDER, _CHECK_COORDS = 1, 2  # dat_decode's check bits
# What dat_decode says was wrong with the first bad event; the order also ranks the checks at one event.
_BACKWARDS, _X_OUTSIDE, _Y_OUTSIDE = 1, 2, 3
_OUTSIDE = {"x": _X_OUTSIDE, "y": _Y_OUTSIDE}
_NO_LIMIT = _X_MASK + 1  # above any 14-bit coordinate: the limit of a header without Height / Width


@cache
def _library() -> tuple[ctypes.CDLL | None, str | None]:
    """The decoder this process uses, built and loaded once."""
    return _load_decoder(_DECODER_FLAGS)


def _load_decoder(flags: tuple[str, ...]) -> tuple[ctypes.CDLL | None, str | None]:
    """``_dat_decode.c``'s library with ``dat_decode``'s signature set, else ``(None, why not)``."""
    lib, why = load_library(_DECODER_SOURCE, flags)
    if lib is not None and not hasattr(lib, "dat_decode"):
        return None, f"the cached decoder library has no dat_decode ({lib._name})"
    if lib is not None:
        int64_p = ctypes.POINTER(ctypes.c_int64)
        lib.dat_decode.restype = ctypes.c_int64
        lib.dat_decode.argtypes = (ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_int32,
                                   ctypes.c_int64, ctypes.c_int64, int64_p, ctypes.POINTER(ctypes.c_int32))
    return lib, why


def decoder_unavailable_reason() -> str | None:
    """``None`` when the compiled decoder is loaded, else why not (the NumPy path runs then)."""
    return _library()[1]


@dataclass(frozen=True)
class DatHeader:
    """What the header of a ``.dat`` file says."""

    data_offset: int  # byte offset of the first event record
    event_type: int
    event_size: int
    height: int | None
    width: int | None
    lines: tuple[str, ...]  # the raw '% ' lines, without the prefix


def _parse_header(path: str, f) -> DatHeader:
    lines: list[str] = []
    height = width = None
    pos = 0
    while True:
        pos = f.tell()
        line = f.readline(_MAX_HEADER_BYTES)
        if not line.startswith(b"% "):
            break
        if pos > _MAX_HEADER_BYTES:
            raise DataFormatError(
                f"{path}: header does not end within {_MAX_HEADER_BYTES} bytes; not a .dat file?"
            )
        text = line[2:].decode("latin-1").rstrip("\r\n")
        lines.append(text)
        words = text.split()
        try:
            if len(words) >= 2 and words[0] == "Height":
                height = int(words[1])
            elif len(words) >= 2 and words[0] == "Width":
                width = int(words[1])
        except ValueError as exc:
            raise DataFormatError(f"{path}: bad header line at byte offset {pos}: {text!r}") from exc
    f.seek(pos)
    if not lines:  # files from before the header existed: Event2D records start at byte 0
        return DatHeader(0, _EVENT2D, _RAW_DTYPE.itemsize, None, None, ())
    type_size = f.read(2)
    if len(type_size) < 2:
        raise DataFormatError(
            f"{path}: truncated at byte offset {pos}: the event type and size bytes are missing"
        )
    event_type, event_size = type_size[0], type_size[1]
    if event_type != _EVENT2D or event_size != _RAW_DTYPE.itemsize:
        raise DataFormatError(
            f"{path}: unsupported event type {event_type} / size {event_size} at byte offset {pos}; "
            f"expected Event2D (type {_EVENT2D}, {_RAW_DTYPE.itemsize} bytes)"
        )
    return DatHeader(pos + 2, event_type, event_size, height, width, tuple(lines))


class DatFile:
    """A memory-mapped ``*_td.dat`` file. ``len()`` is the event count; :meth:`window` reads a time slice.

    :raises DataNotFoundError: no such file.
    :raises DataFormatError: bad header, or a size that is not a whole number of events (truncated file); the
        message names the file and the byte offset.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        with _open_data(self.path, "events") as f:
            self.header = _parse_header(self.path, f)
            size = os.fstat(f.fileno()).st_size
        payload = size - self.header.data_offset
        n, rest = divmod(payload, self.header.event_size)
        if rest:
            offset = self.header.data_offset + n * self.header.event_size
            raise DataFormatError(
                f"{self.path}: truncated: {rest} trailing bytes at byte offset {offset} "
                f"(events are {self.header.event_size} bytes)"
            )
        self._raw = (
            np.memmap(self.path, dtype=_RAW_DTYPE, mode="r", offset=self.header.data_offset, shape=(n,))
            if n
            else np.empty(0, dtype=_RAW_DTYPE)
        )
        self._ordered = False  # set by the first _check_order that finds the timestamps sorted

    def __len__(self) -> int:
        return len(self._raw)

    def __repr__(self) -> str:
        return (
            f"DatFile({self.path!r}, events={len(self)}, height={self.header.height}, "
            f"width={self.header.width})"
        )

    def index_at(self, t_us: int) -> int:
        """Index of the first event with ``t >= t_us`` (binary search: reads about log2(n) records).

        :raises DataFormatError: the file's timestamps go backwards somewhere (checked once per object).
        """
        self._check_order()
        return bisect.bisect_left(self._raw["t"], t_us)

    def _check_order(self) -> None:
        """Refuse timestamps that go backwards anywhere in the file: on them the binary search returns a wrong,
        often empty, window without a word. One streamed pass per object."""
        if not self._ordered:
            self._scan(0, len(self), None, _CHECK_ORDER)
            self._ordered = True

    def _stream(self, lo: int, hi: int):
        """``(index, words)`` chunks of the records ``lo .. hi`` as :data:`_WORD` arrays. Few records come
        from the memory map; many are read into one reused buffer (``readinto``: sequential, no page faults,
        and a file that shrinks meanwhile is an error rather than a memory map's SIGBUS)."""
        if hi - lo <= _CHUNK:
            if hi > lo:
                yield lo, np.asarray(self._raw[lo:hi]).view(_WORD)
            return
        buffer = np.empty(_CHUNK, _WORD)
        with _open_data(self.path, "events") as f:
            f.seek(self.header.data_offset + lo * self.header.event_size)
            for start in range(lo, hi, _CHUNK):
                words = buffer[: min(_CHUNK, hi - start)]
                if f.readinto(memoryview(words).cast("B")) != words.nbytes:
                    raise DataFormatError(f"{self.path}: the file shrank while it was read (event {start})")
                yield start, words

    @property
    def last_time(self) -> int:
        """Timestamp of the last event (0 for an empty file)."""
        return int(self._raw["t"][-1]) if len(self) else 0

    def window(self, t_start: int | None = None, t_end: int | None = None) -> np.ndarray:
        """Events with ``t_start <= t < t_end`` (``None``: open end) as an ``EVENT_DTYPE`` array.

        The half-open window is the toolbox's ``PSEELoader.seek_time`` / ``load_delta_t`` convention.
        :raises DataFormatError: timestamps out of order anywhere in the file, or coordinates in the window
            outside the header's sensor size (the message names the byte offset of the first bad event).
        """
        if t_start is None and t_end is None and not self._ordered:
            out = self._decode(0, len(self), _CHECK_ORDER)  # one pass: decode and order check
            self._ordered = True
            return out
        self._check_order()
        lo = 0 if t_start is None else self.index_at(t_start)
        hi = len(self) if t_end is None else self.index_at(t_end)
        return self._decode(lo, max(lo, hi))

    def _decode(self, lo: int, hi: int, checks: int = 0) -> np.ndarray:
        """Events ``lo .. hi`` as ``EVENT_DTYPE``, coordinates checked against the header's sensor size, and
        ``checks`` (:data:`_CHECK_ORDER` needs ``lo == 0``: a step back is found against the previous event)."""
        out = np.empty(hi - lo, dtype=EVENT_DTYPE)
        self._scan(lo, hi, out, checks | _CHECK_COORDS)
        return out

    def _scan(self, lo: int, hi: int, out: np.ndarray | None, checks: int) -> None:
        """Run the records ``lo .. hi`` through the decoder (compiled, else NumPy) into ``out`` (``None``: only
        check), raising on the first that fails one of ``checks``."""
        if _library()[0] is not None:
            self._scan_compiled(lo, hi, out, checks)
        elif out is None:
            self._check_order_numpy(lo, hi)
        else:
            self._decode_numpy(lo, hi, out, checks & _CHECK_ORDER)

    def _limits(self) -> dict[str, int | None]:
        """The header's bounds of x and y (``None``: unchecked)."""
        return {"x": self.header.width, "y": self.header.height}

    def _scan_compiled(self, lo: int, hi: int, out: np.ndarray | None, checks: int) -> None:
        """:meth:`_scan` by ``dat_decode``, one call per chunk."""
        decode = _library()[0].dat_decode
        limits = self._limits()
        width, height = (_NO_LIMIT if limits[a] is None else min(max(limits[a], 0), _NO_LIMIT) for a in "xy")
        last, what = ctypes.c_int64(-1), ctypes.c_int32(0)  # dat_decode carries the last timestamp over
        for start, words in self._stream(lo, hi):
            dest = None if out is None else out.ctypes.data + (start - lo) * EVENT_DTYPE.itemsize
            bad = decode(words.ctypes.data, len(words), dest, checks, width, height, last, what)
            if bad < len(words):
                self._corrupt(start + bad, what.value)

    def _check_order_numpy(self, lo: int, hi: int) -> None:
        """:meth:`_scan` of the timestamps' order alone, in NumPy."""
        last = -1
        for start, words in self._stream(lo, hi):
            t = words & 0xFFFFFFFF
            step_back = _first_step_back(t, last)
            if step_back is not None:
                self._corrupt(start + step_back, _BACKWARDS)
            last = int(t[-1])

    def _decode_numpy(self, lo: int, hi: int, out: np.ndarray, check_order: bool) -> None:
        """Cache-sized chunks on contiguous 64-bit words, each output field written once; a chunk's bad events
        are collected first, so that the first in file order is named, as by the compiled decoder."""
        t_view, tail_view = out.view(_T_VIEW)["t"], out.view(_TAIL_VIEW)["tail"]
        n = min(_CHUNK, hi - lo)
        field, tail = np.empty(n, _WORD), np.empty(n, _WORD)
        limits = self._limits()
        last = -1
        for start, words in self._stream(lo, hi):
            m, at = len(words), slice(start - lo, start - lo + len(words))
            f, acc = field[:m], tail[:m]
            np.bitwise_and(words, 0xFFFFFFFF, out=f)
            bad = []  # (event, check) of the first failure of each check in this chunk
            if check_order:
                step_back = _first_step_back(f, last)
                if step_back is not None:
                    bad.append((start + step_back, _BACKWARDS))
                last = int(f[-1])
            t_view[at] = f.view(np.int64)  # same width: a plain strided copy, no cast loop
            for k, (axis, at_bit, shift, mask) in enumerate(_TAIL_FIELDS):
                value = f if k else acc  # the first field goes straight into the tail
                np.right_shift(words, shift, out=value)
                np.bitwise_and(value, mask << at_bit, out=value)
                limit = limits.get(axis)
                if limit is not None and value.max() >= limit << at_bit:
                    bad.append((start + int(np.flatnonzero(value >= limit << at_bit)[0]), _OUTSIDE[axis]))
                if k:
                    np.bitwise_or(acc, value, out=acc)
            if bad:
                self._corrupt(*min(bad))  # the check codes rank the checks at one event, as dat_decode does
            tail_view[at] = acc  # after t: it rewrites t's zero bytes 5-7 with zeros

    def _corrupt(self, index: int, check: int) -> None:
        """Raise the error for event ``index``, which failed ``check`` (its values are read back from the file)."""
        offset = self.header.data_offset + index * self.header.event_size
        record = self._raw[index]
        if check == _BACKWARDS:
            what = f"timestamp goes backwards ({int(record['t'])} us after {int(self._raw['t'][index - 1])} us)"
        else:
            axis, shift, mask = ("x", 0, _X_MASK) if check == _X_OUTSIDE else ("y", _Y_SHIFT, _Y_MASK)
            value = (int(record["packed"]) >> shift) & mask
            what = f"{axis} = {value} outside the sensor ({axis} < {self._limits()[axis]})"
        raise DataFormatError(f"{self.path}: corrupt event {index} at byte offset {offset}: {what}")


def _first_step_back(t: np.ndarray, last: int) -> int | None:
    """Position of the first timestamp in ``t`` below its predecessor (``last`` before ``t[0]``), else ``None``."""
    if not len(t) or (t[0] >= last and not (len(t) > 1 and np.less(t[1:], t[:-1]).any())):
        return None
    return int(np.flatnonzero(np.diff(np.concatenate([[max(last, 0)], t]).astype(np.int64)) < 0)[0])


def read_dat(path: str | os.PathLike, t_start: int | None = None, t_end: int | None = None) -> np.ndarray:
    """The events of a Prophesee ``*_td.dat`` file, optionally only ``t_start <= t < t_end`` (microseconds).

    :returns: a structured array with fields ``t`` (int64, us), ``x``, ``y`` (uint16) and ``p`` (uint8,
        0 = OFF, 1 = ON), sorted by ``t``.
    """
    return DatFile(path).window(t_start, t_end)


def write_dat(
    path: str | os.PathLike, events: np.ndarray, height: int = GEN1_HEIGHT, width: int = GEN1_WIDTH
) -> None:
    """Write events (fields ``t``, ``x``, ``y``, ``p``) as a Gen1 ``.dat`` file, atomically.

    :raises InvalidArgumentError: missing fields, unsorted timestamps, or values that do not fit the format.
    """
    names = set(events.dtype.names or ())
    if not {"t", "x", "y", "p"} <= names:
        raise InvalidArgumentError(f"events need fields t, x, y, p; got {sorted(names)}")
    t = np.asarray(events["t"], dtype=np.int64)
    x, y, p = (np.asarray(events[k], dtype=np.int64) for k in ("x", "y", "p"))
    if len(t) and (t.min() < 0 or t.max() >= 2**32 or np.any(t[1:] < t[:-1])):
        raise InvalidArgumentError("timestamps must be sorted and within [0, 2**32) microseconds")
    if len(t) and (x.min() < 0 or x.max() >= width or y.min() < 0 or y.max() >= height):
        raise InvalidArgumentError(f"coordinates must lie in the {width}x{height} sensor")
    if max(height, width) > _X_MASK:
        raise InvalidArgumentError(f"height and width must be below {_X_MASK + 1} in the .dat format")
    raw = np.empty(len(t), dtype=_RAW_DTYPE)
    raw["t"] = t
    raw["packed"] = x | (y << _Y_SHIFT) | ((p > 0).astype(np.int64) << _P_SHIFT)
    header = (
        f"% Data file containing Event2D events.\n% Version 2\n% Height {height}\n% Width {width}\n"
    ).encode("latin-1") + bytes([_EVENT2D, _RAW_DTYPE.itemsize])
    with atomic_open(path, "wb") as fh:
        fh.write(header + raw.tobytes())


# Older label files name the timestamp 'ts' and the score 'confidence' (toolbox README, box_loading.py).
_BOX_RENAMES = {"ts": "t", "confidence": "class_confidence"}
_BOX_REQUIRED = ("t", "x", "y", "w", "h", "class_id")
_NPY_HEADER_READERS = {
    (1, 0): np.lib.format.read_array_header_1_0,
    (2, 0): np.lib.format.read_array_header_2_0,
}


def _open_data(path: str, what: str):
    """``open(path, "rb")``, where a missing file is a :class:`DataNotFoundError` naming it."""
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise DataNotFoundError(f"Gen1 {what} file not found: {path}") from None


def read_boxes(path: str | os.PathLike, num_classes: int = GEN1_NUM_CLASSES) -> np.ndarray:
    """The labels of a Gen1 ``*_bbox.npy`` file as a ``BBOX_DTYPE`` array, whatever dtype version it ships.

    Handles ``ts`` vs ``t`` and ``confidence`` vs ``class_confidence``; a file without ``track_id`` gets one
    distinct id per box (so "last box per track" keeps them all), a file without a confidence gets 1.0.

    :param num_classes: class ids must lie in ``0 .. num_classes - 1`` (Gen1: 2, car = 0 and pedestrian = 1).
    :raises DataNotFoundError: no such file.
    :raises DataFormatError: not a structured array with the box fields, truncated (names the byte offset
        where records stop), a box that :func:`first_bad_box` refuses (class id out of range, non-finite
        coordinates, ``w`` or ``h`` not positive) or timestamps out of order; the message names the box and
        its byte offset.
    """
    path = os.fspath(path)
    with _open_data(path, "label") as f:
        try:
            version = np.lib.format.read_magic(f)
            read_header = _NPY_HEADER_READERS.get(version)
            if read_header is None:
                raise ValueError(f"unsupported .npy format version {version}")
            shape, _, dtype = read_header(f)
        except ValueError as exc:
            raise DataFormatError(f"{path}: not a .npy file ({exc})") from exc
        data_offset = f.tell()
        size = os.fstat(f.fileno()).st_size
    if dtype.names is None:
        raise DataFormatError(
            f"{path}: expected a structured array with fields {_BOX_REQUIRED}, got dtype {dtype}"
        )
    count = int(np.prod(shape))
    if size - data_offset < count * dtype.itemsize:
        complete = (size - data_offset) // dtype.itemsize
        raise DataFormatError(
            f"{path}: truncated: {count} boxes of {dtype.itemsize} bytes expected from byte offset "
            f"{data_offset}, records stop at byte offset {data_offset + complete * dtype.itemsize}"
        )
    boxes = np.load(path, allow_pickle=False).reshape(-1)
    names = [_BOX_RENAMES.get(n, n) for n in boxes.dtype.names]
    missing = [n for n in _BOX_REQUIRED if n not in names]
    if missing:
        raise DataFormatError(f"{path}: box records lack field(s) {missing}; found {list(boxes.dtype.names)}")

    def corrupt(i: int, what: str) -> DataFormatError:
        return DataFormatError(f"{path}: corrupt box {i} at byte offset {data_offset + i * dtype.itemsize}: {what}")

    # Checked on the file's own fields: converting first would wrap a negative class id into a huge uint32.
    bad = first_bad_box(boxes, num_classes)
    if bad is not None:
        raise corrupt(*bad)
    out = np.zeros(len(boxes), dtype=BBOX_DTYPE)
    out["track_id"] = np.arange(len(boxes))
    out["class_confidence"] = 1.0
    for src, dst in zip(boxes.dtype.names, names, strict=True):
        if dst in BBOX_DTYPE.names:
            out[dst] = boxes[src]
    backwards = np.flatnonzero(out["t"][1:] < out["t"][:-1])
    if backwards.size:
        raise corrupt(int(backwards[0]) + 1, "timestamps go backwards (labels must be sorted by time)")
    return out
