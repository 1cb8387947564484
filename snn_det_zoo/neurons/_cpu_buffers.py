"""Output buffers of the fused CPU loops, kept when their tensors are gone and handed to the next output.

A fresh large tensor gets fresh pages from the operating system (glibc serves blocks above 32 MiB with
``mmap`` and unmaps them on free), and the first write into each page faults and zeroes it: for a 200 MB
spike tensor that costs more than the I-LIF loop itself (with huge pages about half the loop; with 4 KiB
pages several times it). A network asks for outputs of the same few sizes at every forward, so, as PyTorch's
CUDA caching allocator does on the GPU, this cache keeps the memory of outputs whose tensors (and all their
views) are gone and gives it to the next output of the same byte size, already faulted in.

Each buffer is a NumPy array (NumPy requests transparent huge pages for large arrays on Linux). A tensor is lent one
through a fresh view of the array, wrapped by :func:`torch.frombuffer`, whose storage holds that view until the last
tensor sharing it is freed; a ``weakref.finalize`` on the view then returns the array to the cache. (Like a
``torch.from_numpy`` tensor, a lent tensor cannot grow with ``resize_``.) At most
``SNN_DET_ZOO_CPU_BUFFER_CACHE_MB`` (default 1024) of idle buffers are kept, the oldest dropped first; 0 turns the
cache off. :func:`empty_cpu_buffer_cache` frees every idle buffer, like ``torch.cuda.empty_cache``.
"""

from __future__ import annotations

import collections
import os
import threading
import weakref

import numpy as np
import torch

from ..errors import InvalidArgumentError

__all__ = ["cpu_buffer_cache_info", "empty", "empty_cpu_buffer_cache"]

_ENV = "SNN_DET_ZOO_CPU_BUFFER_CACHE_MB"
_DEFAULT_MB = 1024
# Below this, malloc serves blocks from its heap, already faulted in: a torch.empty is as fast.
_MIN_BYTES = 4 << 20
_ALIGN = 4096


class _Cache:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.idle: collections.OrderedDict[int, np.ndarray] = collections.OrderedDict()  # id -> buffer
        self.idle_bytes = 0
        self.lent = 0
        self.limit = _DEFAULT_MB << 20  # the limit of the latest take, for finalizers (which must not raise)
        # Buffers whose tensors are gone, appended by finalizers (deque.append is atomic): a finalizer can run
        # in any thread, and inside this module's own locked code when a collection frees a tensor there.
        self.returned: collections.deque[np.ndarray] = collections.deque()

    def take(self, nbytes: int, limit: int) -> np.ndarray:
        with self.lock:
            self.limit = limit
            self._settle(limit)
            for key, buf in self.idle.items():
                if buf.nbytes == nbytes:
                    del self.idle[key]
                    self.idle_bytes -= nbytes
                    break
            else:
                buf = _aligned(nbytes)
            self.lent += 1
            return buf

    def give_back(self, buf: np.ndarray) -> None:
        self.returned.append(buf)
        if self.lock.acquire(blocking=False):  # else the holder (maybe this very thread) settles it
            try:
                self._settle(self.limit)
            finally:
                self.lock.release()

    def _settle(self, limit: int) -> None:
        while self.returned:
            buf = self.returned.popleft()
            self.lent -= 1
            self.idle[id(buf)] = buf
            self.idle_bytes += buf.nbytes
        while self.idle_bytes > limit:
            _, buf = self.idle.popitem(last=False)
            self.idle_bytes -= buf.nbytes

    def set_limit(self, limit: int) -> None:
        """Keep at most ``limit`` idle bytes from now on, dropping the oldest idle buffers beyond it."""
        with self.lock:
            self.limit = limit
            self._settle(limit)

    def clear(self) -> None:
        with self.lock:
            self._settle(0)


def _aligned(nbytes: int) -> np.ndarray:
    """A new uninitialised buffer starting on a page boundary. NumPy's own start is only 16-byte aligned, and
    the vector loads of the ops that read the tensor (oneDNN's convolutions) then straddle cache lines: a
    training step ran 25% slower on such buffers."""
    raw = np.empty(nbytes + _ALIGN, np.uint8)
    start = -raw.ctypes.data % _ALIGN
    return raw[start : start + nbytes]


_CACHES: dict[int, _Cache] = {}
if hasattr(os, "register_at_fork"):
    # A forked child (a DataLoader worker) must not keep its copy of the parent's idle buffers: they would be
    # copied page by page as soon as the parent reuses them.
    os.register_at_fork(after_in_child=_CACHES.clear)


def _cache() -> _Cache:
    # One cache per process: a forked child must not wait on a lock its parent held at the fork.
    return _CACHES.setdefault(os.getpid(), _Cache())


def _limit_bytes() -> int:
    value = os.environ.get(_ENV)
    if value is None or value == "":
        return _DEFAULT_MB << 20
    try:
        mb = float(value)
    except ValueError:
        mb = -1.0
    if not 0 <= mb < 1 << 40:  # NaN, negative and infinite (or absurd) limits are refused
        raise InvalidArgumentError(f"{_ENV} must be a number of MiB >= 0 (0 turns the cache off), got {value!r}")
    return int(mb * (1 << 20))


def empty(shape: torch.Size | tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """An uninitialised contiguous CPU tensor; a large one is lent a cached buffer (see the module)."""
    nbytes = torch.Size(shape).numel() * dtype.itemsize
    limit = _limit_bytes()
    if nbytes < _MIN_BYTES:
        return torch.empty(shape, dtype=dtype)
    if limit == 0:
        cache = _CACHES.get(os.getpid())
        if cache is not None:  # turned off after buffers were lent: those are dropped as they come back
            cache.set_limit(0)
        return torch.frombuffer(_aligned(nbytes), dtype=dtype).view(shape)
    cache = _cache()
    buf = cache.take(nbytes, limit)
    lease = buf.view()  # the storage holds this view; its finalizer returns the buffer
    finalizer = weakref.finalize(lease, cache.give_back, buf)
    finalizer.atexit = False
    return torch.frombuffer(lease, dtype=dtype).view(shape)


def empty_cpu_buffer_cache() -> None:
    """Free every idle cached buffer now (buffers lent to live tensors return, and are kept, later)."""
    _cache().clear()


def cpu_buffer_cache_info() -> dict[str, int]:
    """``{'idle_buffers', 'idle_bytes', 'lent_buffers', 'limit_bytes'}`` of this process's cache."""
    cache, limit = _cache(), _limit_bytes()
    with cache.lock:
        cache._settle(limit)
        return {"idle_buffers": len(cache.idle), "idle_bytes": cache.idle_bytes, "lent_buffers": cache.lent,
                "limit_bytes": limit}
