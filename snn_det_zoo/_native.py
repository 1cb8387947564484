"""C sources compiled at first use with the system's C compiler and loaded with ctypes.

The zoo's hot loops (the I-LIF neuron on the CPU, the Gen1 ``.dat`` decoder) are small C files shipped beside
their modules. Each is compiled once per (source, flags, compiler, machine) with ``$CC`` (else ``cc``,
``gcc`` or ``clang``) into ``$SNN_DET_ZOO_HOME/kernels`` (default ``~/.cache/snn_det_zoo/kernels``), written
atomically, and loaded with ctypes, which releases the GIL during a call. Where no compiler works, the loader
says why and the caller runs its pure NumPy/torch path instead: never an error.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from functools import cache
from pathlib import Path

from ._atomic import atomic_path

__all__ = ["NATIVE", "build", "compilers", "cpu_fingerprint", "kernel_dir", "load_library"]

# -march=native (AVX2/AVX-512 where present) is used only where the CPU can be fingerprinted, and the
# fingerprint is part of the cache key, so a shared cache never hands one machine's library to another.
NATIVE = "-march=native"


def compilers() -> list[str]:
    """The C compilers to try, ``$CC`` first."""
    named = os.environ.get("CC", "").split()
    found = [shutil.which(name) for name in ("cc", "gcc", "clang")]
    return ([named[0]] if named else []) + [c for c in found if c]


def kernel_dir() -> Path:
    """Where compiled libraries are cached: ``$SNN_DET_ZOO_HOME/kernels``."""
    home = os.environ.get("SNN_DET_ZOO_HOME") or Path.home() / ".cache" / "snn_det_zoo"
    return Path(home).expanduser() / "kernels"


@cache
def cpu_fingerprint() -> str | None:
    """The CPU's model and feature flags (Linux), or ``None`` where they cannot be read."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return None
    wanted = [ln for ln in lines if ln.split(":")[0].strip() in ("model name", "flags", "Features", "CPU part")]
    return "\n".join(dict.fromkeys(wanted)) or None


def build(source: Path, compiler: str, flags: Sequence[str]) -> Path:
    """Compile ``source`` into a shared library once per (source, flags, compiler, machine); return its path."""
    code = source.read_bytes()
    parts = [code, " ".join(flags).encode(), compiler.encode(), platform.machine().encode()]
    if NATIVE in flags:
        parts.append((cpu_fingerprint() or "").encode())
    key = hashlib.sha256(b"\0".join(parts)).hexdigest()[:16]
    target = kernel_dir() / f"{source.stem.lstrip('_')}-{key}.so"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, atomic_path(target, suffix=".so") as out:
        src = Path(tmp) / source.name
        src.write_bytes(code)
        proc = subprocess.run(
            [compiler, *flags, "-shared", "-fPIC", str(src), "-o", str(out)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"{compiler} failed: {proc.stderr.strip()[-400:]}")
    return target


def load_library(
    source: Path, flags: Sequence[str], variants: Sequence[Sequence[str]] = ((),)
) -> tuple[ctypes.CDLL | None, str | None]:
    """``(library, None)`` for the first compiler and variant (extra flags, best first) that builds and loads,
    else ``(None, why not)``. ``-march=native`` is tried first where the CPU can be fingerprinted."""
    errors = []
    arches = ((NATIVE,), ()) if cpu_fingerprint() else ((),)
    for compiler in compilers():
        for arch in arches:
            for variant in variants:
                extra = (*arch, *variant)
                try:
                    return ctypes.CDLL(str(build(source, compiler, (*flags, *extra)))), None
                except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
                    errors.append(f"{Path(compiler).name} {' '.join(extra)}: {exc}")
    return None, "; ".join(errors) or "no C compiler found ($CC, cc, gcc or clang)"
