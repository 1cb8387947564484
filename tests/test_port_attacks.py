"""The restricted unpickler against an attacker: checkpoints written opcode by opcode, one class of attack each.

What must hold (port/unpickler.py): no code of the file runs; state is set only on objects the load created;
numpy objects come only from checked descriptors; no allocation exceeds what the file holds; every storage a
tensor refers to is present; only the zoo's own errors leave, naming the file and the offending global or
record.
"""

from __future__ import annotations

import argparse
import collections
import pickle
import struct
import subprocess
import sys
import textwrap
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from snn_det_zoo.errors import CheckpointFormatError, UnsafeCheckpointError, WeightsNotFoundError, ZooError
from snn_det_zoo.port import load_checkpoint
from snn_det_zoo.port.unpickler import read_torch_pickle

P = pickle

# ------------------------------------------------------------------------------ a small pickle assembler


def glob(module: str, name: str) -> bytes:
    return P.GLOBAL + f"{module}\n{name}\n".encode()


def text(value: str) -> bytes:
    data = value.encode()
    return P.BINUNICODE + struct.pack("<I", len(data)) + data


def num(value: int) -> bytes:
    data = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
    return P.LONG1 + bytes([len(data)]) + data if len(data) < 256 else P.LONG4 + struct.pack("<i", len(data)) + data


def raw(value: bytes) -> bytes:
    return P.SHORT_BINBYTES + bytes([len(value)]) + value if len(value) < 256 else (
        P.BINBYTES + struct.pack("<I", len(value)) + value)


def tup(*items: bytes) -> bytes:
    return P.MARK + b"".join(items) + P.TUPLE


def call(func: bytes, *args: bytes) -> bytes:
    return func + tup(*args) + P.REDUCE


def odict(**items: bytes) -> bytes:
    body = b"".join(text(k) + v for k, v in items.items())
    return call(glob("collections", "OrderedDict")) + (P.MARK + body + P.SETITEMS if items else b"")


def storage(key: str, numel: int, kind: str = "FloatStorage", legacy: bool = False) -> bytes:
    """A persistent id of a storage; the legacy format adds a sixth field, the view record (None)."""
    fields = [text("storage"), glob("torch", kind), text(key), text("cpu"), num(numel)]
    return tup(*fields, *([P.NONE] if legacy else [])) + P.BINPERSID


def tensor(key: str, numel: int, size: tuple[int, ...], stride: tuple[int, ...], offset: int = 0,
           kind: str = "FloatStorage", legacy: bool = False) -> bytes:
    return call(glob("torch._utils", "_rebuild_tensor_v2"), storage(key, numel, kind, legacy), num(offset),
                tup(*map(num, size)), tup(*map(num, stride)), P.NEWFALSE, odict())


def module(cls: str, parameters: bytes, modules: bytes | None = None) -> bytes:
    """A pickled nn.Module as torch writes it: NEWOBJ of the class, then BUILD with its ``__dict__``."""
    mod, name = cls.rsplit(".", 1)
    state = P.MARK + text("training") + P.NEWFALSE + text("_parameters") + parameters + text("_buffers") + \
        odict() + text("_modules") + (modules or odict()) + P.DICT
    return glob(mod, name) + P.EMPTY_TUPLE + P.NEWOBJ + state + P.BUILD


def program(*body: bytes) -> bytes:
    return P.PROTO + b"\x02" + b"".join(body) + P.STOP


def write_zip(path: Path, pkl: bytes, records: dict[str, bytes] | None = None,
              compression: int = zipfile.ZIP_STORED) -> Path:
    """A checkpoint in torch's zip layout (archive/data.pkl, archive/byteorder, archive/data/<key>)."""
    with zipfile.ZipFile(path, "w", compression=compression) as archive:
        archive.writestr("archive/data.pkl", pkl)
        archive.writestr("archive/byteorder", "little")
        for key, data in (records or {}).items():
            archive.writestr(f"archive/data/{key}", data)
    return path


def write_legacy(path: Path, obj_pickle: bytes, keys: list[str], storages: list[tuple[int, bytes]]) -> Path:
    """torch's pre-1.6 layout: magic, protocol, sys_info, the object, the key list, (numel, bytes) per key."""
    header = b"".join(pickle.dumps(v, protocol=2) for v in
                      (0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001, "little_endian": True}))
    body = b"".join(struct.pack("<q", numel) + data for numel, data in storages)
    path.write_bytes(header + obj_pickle + pickle.dumps(keys, protocol=2) + body)
    return path


WEIGHT = np.arange(6, dtype=np.float32)


def legit_model_checkpoint(path: Path) -> Path:
    """A valid Ultralytics-shaped checkpoint: {'model': DetectionModel with one Conv2d child}, built by hand."""
    conv = module("torch.nn.modules.conv.Conv2d", odict(weight=tensor("0", 6, (1, 1, 2, 3), (6, 6, 3, 1))))
    model = module("ultralytics.nn.tasks.DetectionModel", odict(), odict(conv=conv))
    pkl = program(P.EMPTY_DICT, P.MARK, text("model"), model, text("epoch"), num(-1), P.SETITEMS)
    return write_zip(path, pkl, {"0": WEIGHT.tobytes()})


def check_refused(path: Path, error: type[ZooError], *names: str) -> str:
    with pytest.raises(error) as info:
        read_torch_pickle(path)
    message = str(info.value)
    assert str(path) in message
    for name in names:
        assert name in message
    return message


# ------------------------------------------------------------------------------ the legitimate paths


def test_hand_built_checkpoint_loads_with_its_weights(tmp_path):
    ckpt = load_checkpoint(legit_model_checkpoint(tmp_path / "ok.pt"))
    assert list(ckpt.state_dict) == ["conv.weight"]
    assert torch.equal(ckpt.state_dict["conv.weight"].flatten(), torch.from_numpy(WEIGHT))
    assert ckpt.model_class == "ultralytics.nn.tasks.DetectionModel" and ckpt.epoch == -1


def test_what_torch_save_writes_still_loads(tmp_path):
    path = tmp_path / "plain.pt"
    data = {"t": torch.arange(6.0).reshape(2, 3).t(), "half": torch.ones(3, dtype=torch.half),
            "best_fitness": np.array([0.25]), "score": np.float64(1.5), "flags": np.array([True, False]),
            "opt": argparse.Namespace(epochs=3, hyp={"lr0": 0.01}), "size": torch.Size([2, 3]),
            "device": torch.device("cpu"), "names": {0: "car", 1: "pedestrian"}, "set": {1, 2},
            "state": torch.nn.Linear(2, 1).state_dict()}
    torch.save(data, path)
    out = read_torch_pickle(path)
    assert torch.equal(out["t"], data["t"]) and out["t"].stride() == (1, 3)
    assert out["half"].dtype == torch.half and np.array_equal(out["flags"], data["flags"])
    assert out["best_fitness"].tolist() == [0.25] and out["score"] == 1.5 and out["set"] == {1, 2}
    assert out["opt"].epochs == 3 and out["size"] == torch.Size([2, 3]) and out["names"][1] == "pedestrian"
    assert torch.equal(out["state"]["weight"], data["state"]["weight"])


# ------------------------------------------------------------------------------ 1. no code runs

MARKER = "snn_det_zoo_attack_marker"


def _code_execution_variants(marker: Path) -> dict[str, bytes]:
    command = text(f"touch {marker}")
    return {
        "REDUCE os.system": program(call(glob("os", "system"), command)),
        "INST os.system": program(P.MARK + command + P.INST + b"os\nsystem\n"),
        "OBJ os.system": program(P.MARK + glob("os", "system") + command + P.OBJ),
        "NEWOBJ subprocess.Popen": program(glob("subprocess", "Popen"), tup(command), P.NEWOBJ),
        "NEWOBJ_EX subprocess.Popen": program(glob("subprocess", "Popen"), tup(command), P.EMPTY_DICT,
                                              P.NEWOBJ_EX),
        "REDUCE builtins.eval": program(call(glob("builtins", "eval"), text("__import__('os')"))),
        "rebuild_from_type_v2 os.system": program(call(glob("torch._tensor", "_rebuild_from_type_v2"),
                                                       glob("os", "system"), glob("torch", "Tensor"),
                                                       tup(command), P.NONE)),
        "copyreg._reconstructor os": program(call(glob("copyreg", "_reconstructor"), glob("os", "system"),
                                                  glob("builtins", "object"), P.NONE)),
        "torch.load called by the pickle": program(call(glob("torch", "load"), text("/etc/passwd"))),
        "getattr chain": program(call(glob("builtins", "getattr"), glob("os", "path"), text("join"))),
    }


@pytest.mark.parametrize("variant", sorted(_code_execution_variants(Path("x"))))
def test_calls_of_anything_not_allow_listed_are_refused_and_nothing_runs(tmp_path, variant):
    marker = tmp_path / MARKER
    path = write_zip(tmp_path / "evil.pt", _code_execution_variants(marker)[variant])
    message = check_refused(path, UnsafeCheckpointError)
    assert any(name in message for name in ("os.system", "subprocess.Popen", "builtins.eval", "torch.load",
                                            "builtins.getattr"))
    assert not marker.exists()


@pytest.mark.parametrize("opcode", [P.EXT1 + b"\x01", P.EXT2 + b"\x01\x00", P.EXT4 + b"\x01\x00\x00\x00",
                                    P.PERSID + b"0\n"])
def test_opcodes_that_reach_process_wide_tables_are_refused(tmp_path, opcode):
    check_refused(write_zip(tmp_path / "ext.pt", program(opcode)), UnsafeCheckpointError, "opcode")


# ------------------------------------------------------------------------------ 2. nothing outside the load changes


def _state_attacks() -> dict[str, bytes]:
    slot = P.NONE + P.MARK + text("dtype") + glob("torch", "int32") + P.DICT + P.TUPLE2  # (None, {...})
    return {
        "BUILD on a storage type": program(glob("torch", "FloatStorage"), slot, P.BUILD),
        "BUILD dict state on a storage type": program(glob("torch", "FloatStorage"), P.MARK, text("dtype"),
                                                      glob("torch", "int32"), P.DICT, P.BUILD),
        "BUILD on an allow-listed class": program(glob("collections", "OrderedDict"), slot, P.BUILD),
        "BUILD on torch.Tensor": program(glob("torch", "Tensor"), slot, P.BUILD),
        "BUILD on a torch dtype": program(glob("torch", "float32"), slot, P.BUILD),
        "BUILD on numpy.ndarray": program(glob("numpy", "ndarray"), slot, P.BUILD),
        "BUILD on a reconstructor function": program(glob("torch._utils", "_rebuild_tensor_v2"), slot, P.BUILD),
        "BUILD on a stub class": program(glob("ultralytics.nn.tasks", "DetectionModel"), slot, P.BUILD),
        "SETITEMS on a global": program(glob("builtins", "dict"), P.MARK, text("k"), text("v"), P.SETITEMS),
        "SETITEM on a global": program(glob("torch", "FloatStorage"), text("k"), text("v"), P.SETITEM),
        "APPENDS on a global": program(glob("builtins", "list"), P.MARK, text("x"), P.APPENDS),
        "APPEND on a global": program(glob("numpy", "ndarray"), text("x"), P.APPEND),
        "ADDITEMS on a global": program(glob("builtins", "set"), P.MARK, text("x"), P.ADDITEMS),
        "BUILD on a tensor (re-points its storage)": program(
            tensor("0", 1, (1,), (1,)), tup(storage("0", 1), num(0), tup(num(10 ** 6)), tup(num(1))), P.BUILD),
    }


@pytest.mark.parametrize("variant", sorted(_state_attacks()))
def test_state_is_set_only_on_objects_the_load_created(tmp_path, variant):
    path = write_zip(tmp_path / "state.pt", _state_attacks()[variant], {"0": b"\x00" * 4})
    check_refused(path, UnsafeCheckpointError, "opcode")
    # The globals are intact, and a legitimate import in the same process still reads the right weights.
    assert not hasattr(collections.OrderedDict, "dtype") and not hasattr(torch.Tensor, "dtype_") and \
        torch.float32.is_floating_point
    ckpt = load_checkpoint(legit_model_checkpoint(tmp_path / "ok.pt"))
    assert torch.equal(ckpt.state_dict["conv.weight"].flatten(), torch.from_numpy(WEIGHT))


def test_stub_classes_are_made_per_load(tmp_path):
    path = write_zip(tmp_path / "a.pt", program(glob("ultralytics.nn.tasks", "DetectionModel"), P.EMPTY_TUPLE,
                                                P.NEWOBJ))
    first, second = read_torch_pickle(path), read_torch_pickle(path)
    assert type(first) is not type(second)  # nothing one load does to its classes reaches another load


def test_a_shared_numpy_dtype_is_never_given_forged_state(tmp_path):
    # numpy.dtype('f8', align=False, copy=False) is numpy's own float64 instance; forged state would change
    # every float64 array of the process (or crash it).
    forged = tup(num(3), text("<"), P.NONE, P.NONE, P.NONE, num(1 << 30), num(1), num(0))
    path = write_zip(tmp_path / "dtype.pt", program(call(glob("numpy", "dtype"), text("f8"), P.NEWFALSE,
                                                         P.NEWFALSE), forged, P.BUILD))
    check_refused(path, UnsafeCheckpointError, "forged state")
    assert np.dtype("f8").itemsize == 8 and np.arange(3.0).sum() == 3.0


# ------------------------------------------------------------------------------ 3. numpy only from checked descriptors


def _array(state_dtype: bytes, shape: tuple[int, ...], data: bytes) -> bytes:
    empty = call(glob("numpy._core.multiarray", "_reconstruct"), glob("numpy", "ndarray"), tup(num(0)),
                 raw(b"b"))
    return empty + tup(num(1), tup(*map(num, shape)), state_dtype, P.NEWFALSE, raw(data)) + P.BUILD


def _dtype(code: str, state: bytes | None = None) -> bytes:
    made = call(glob("numpy", "dtype"), text(code), P.NEWFALSE, P.NEWTRUE)
    return made + (state + P.BUILD if state is not None else b"")


CANONICAL = tup(num(3), text("<"), P.NONE, P.NONE, P.NONE, num(-1), num(-1), num(0))


def _numpy_attacks() -> dict[str, tuple[bytes, str]]:
    f8 = _dtype("f8", CANONICAL)
    return {
        "bytes shorter than shape x dtype": (_array(f8, (1 << 40,), b"\x00" * 8), "comes with 8 bytes"),
        "bytes longer than shape x dtype": (_array(f8, (1,), b"\x00" * 16), "comes with 16 bytes"),
        "forged item size in dtype state": (
            _array(_dtype("f8", tup(num(3), text("<"), P.NONE, P.NONE, P.NONE, num(1 << 20), num(1), num(0))),
                   (1,), b"\x00" * 8), "forged state"),
        "object dtype": (_array(_dtype("O8"), (1,), b"\x00" * 8), "O8"),
        "structured dtype": (_array(_dtype("V4"), (1,), b"\x00" * 4), "V4"),
        "big-endian dtype": (_array(_dtype("f8", tup(num(3), text(">"), P.NONE, P.NONE, P.NONE, num(-1),
                                                      num(-1), num(0))), (1,), b"\x00" * 8), "forged state"),
        "array subclass": (call(glob("numpy._core.multiarray", "_reconstruct"), glob("numpy", "matrix"),
                                tup(num(0)), raw(b"b")), "numpy.matrix"),
        "scalar of the wrong length": (call(glob("numpy._core.multiarray", "scalar"), f8, raw(b"\x00" * 3)),
                                       "needs 8 bytes"),
        "scalar with object dtype": (call(glob("numpy._core.multiarray", "scalar"), _dtype("O8"), text("x")),
                                     "O8"),
        "negative shape": (_array(f8, (-1,), b""), r"in \[0, 2\*\*63\)"),
    }


@pytest.mark.parametrize("variant", sorted(_numpy_attacks()))
def test_numpy_objects_come_only_from_checked_descriptors(tmp_path, variant):
    body, expected = _numpy_attacks()[variant]
    path = write_zip(tmp_path / "np.pt", program(body))
    with pytest.raises((UnsafeCheckpointError, CheckpointFormatError), match=expected) as info:
        read_torch_pickle(path)
    assert str(path) in str(info.value)


@pytest.mark.slow
def test_forged_numpy_state_cannot_crash_the_process(tmp_path):
    """Each forgery in a fresh interpreter: a regression would crash it (SIGSEGV), not just fail."""
    paths = []
    for i, (body, _) in enumerate(_numpy_attacks().values()):
        paths.append(str(write_zip(tmp_path / f"np{i}.pt", program(body))))
    script = textwrap.dedent(f"""
        from snn_det_zoo.errors import ZooError
        from snn_det_zoo.port.unpickler import read_torch_pickle
        for path in {paths!r}:
            try:
                arr = read_torch_pickle(path)
            except ZooError:
                continue
            raise SystemExit(f"{{path}} was accepted")
        print("all refused")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "all refused" in done.stdout


# ------------------------------------------------------------------------------ 4. allocations bounded by the file


def _peak_bytes(path: Path) -> int:
    tracemalloc.start()
    try:
        with pytest.raises(ZooError):
            read_torch_pickle(path)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


GIB = 1 << 30


def _allocation_attacks(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    t = tmp_path
    bomb = t / "bomb.pt"  # 64 MiB of zeros deflated to a few tens of KiB, declared honestly
    write_zip(bomb, program(tensor("0", 16 << 20, (16 << 20,), (1,))), {"0": bytes(64 << 20)},
              compression=zipfile.ZIP_DEFLATED)
    return {
        "declared storage size": (write_zip(t / "declared.pt", program(tensor("0", 1 << 40, (1,), (1,))),
                                            {"0": b"\x00" * 4}), "expected"),
        "deflated zip record": (bomb, "compressed"),
        "zero-stride expansion": (write_zip(t / "stride.pt", program(tensor("0", 1, (1 << 20, 1 << 20), (0, 0))),
                                            {"0": b"\x00" * 4}), "declares 1099511627776 elements"),
        "torch.Tensor(n)": (write_zip(t / "tensor_n.pt", program(call(glob("torch", "Tensor"), num(1 << 40)))),
                            "torch.Tensor"),
        "bytearray(n)": (write_zip(t / "bytearray_n.pt", program(call(glob("builtins", "bytearray"),
                                                                      num(1 << 40)))), "bytearray"),
        "BYTEARRAY8 length": (write_zip(t / "ba8.pt", P.PROTO + b"\x05" + P.BYTEARRAY8 + struct.pack("<Q", 1 << 40)),
                              "BYTEARRAY8"),
        "BINBYTES8 length": (write_zip(t / "bb8.pt", P.PROTO + b"\x04" + P.BINBYTES8 + struct.pack("<Q", 1 << 40)),
                             "truncated"),
        "BINUNICODE8 length": (write_zip(t / "bu8.pt", P.PROTO + b"\x04" + P.BINUNICODE8
                                         + struct.pack("<Q", 1 << 40)), "truncated"),
        "FRAME length": (write_zip(t / "frame.pt", P.PROTO + b"\x04" + P.FRAME + struct.pack("<Q", 1 << 40)),
                         "pickle"),
        "legacy declared storage size": (
            write_legacy(t / "legacy_big.pt", program(tensor("0", 1 << 40, (1,), (1,), legacy=True)), ["0"],
                         [(1 << 40, b"\x00" * 4)]), "past the end"),
    }


@pytest.mark.parametrize("variant", ["declared storage size", "deflated zip record", "zero-stride expansion",
                                     "torch.Tensor(n)", "bytearray(n)", "BYTEARRAY8 length", "BINBYTES8 length",
                                     "BINUNICODE8 length", "FRAME length", "legacy declared storage size"])
def test_no_allocation_exceeds_what_the_file_holds(tmp_path, variant):
    path, expected = _allocation_attacks(tmp_path)[variant]
    check_refused(path, ZooError, expected)
    # Refused before allocating: the peak is of the order of the file itself, not of what it declares.
    assert _peak_bytes(path) < 8 * (1 << 20) + 2 * path.stat().st_size


def test_a_storage_declared_but_never_filled_is_refused_not_zeros(tmp_path):
    legacy = write_legacy(tmp_path / "unfilled.pt", program(tensor("0", 1, (1,), (1,), legacy=True)), [], [])
    check_refused(legacy, CheckpointFormatError, "['0']", "not in the file")
    missing = write_zip(tmp_path / "missing.pt", program(tensor("7", 1, (1,), (1,))))
    check_refused(missing, CheckpointFormatError, "archive/data/7", "missing")


def test_legacy_storages_are_checked_against_their_declaration(tmp_path):
    good = write_legacy(tmp_path / "good.pt", program(tensor("0", 2, (2,), (1,), legacy=True)), ["0"],
                        [(2, np.array([1.5, -2.0], dtype=np.float32).tobytes())])
    assert read_torch_pickle(good).tolist() == [1.5, -2.0]
    # A view record (view key, offset, size) into a root storage of 3 elements: the tensor reads from offset 1.
    view_pid = tup(text("storage"), glob("torch", "FloatStorage"), text("0"), text("cpu"), num(3),
                   tup(text("v"), num(1), num(2))) + P.BINPERSID
    viewed = call(glob("torch._utils", "_rebuild_tensor_v2"), view_pid, num(1), tup(num(1)), tup(num(1)),
                  P.NEWFALSE, odict())
    root = np.array([1.0, 2.0, 3.0], dtype=np.float32).tobytes()
    assert read_torch_pickle(write_legacy(tmp_path / "view.pt", program(viewed), ["0"], [(3, root)])).tolist() == [3.0]
    overrun = tup(text("storage"), glob("torch", "FloatStorage"), text("0"), text("cpu"), num(3),
                  tup(text("v"), num(2), num(2))) + P.BINPERSID
    check_refused(write_legacy(tmp_path / "view_over.pt", program(overrun), ["0"], [(3, root)]),
                  CheckpointFormatError, "overruns storage 0")
    short = write_legacy(tmp_path / "short.pt", program(tensor("0", 2, (2,), (1,), legacy=True)), ["0"],
                         [(1, b"\x00" * 4)])
    check_refused(short, CheckpointFormatError, "storage 0")
    extra = write_legacy(tmp_path / "extra.pt", program(tensor("0", 1, (1,), (1,), legacy=True)), ["0", "9"],
                         [(1, b"\x00" * 4), (1, b"\x00" * 4)])
    check_refused(extra, CheckpointFormatError, "storage record 9")


# ------------------------------------------------------------------------------ 5. only the zoo's errors leave


def test_random_corruptions_raise_only_zoo_errors_naming_the_file(tmp_path):
    source = legit_model_checkpoint(tmp_path / "ok.pt")
    with zipfile.ZipFile(source) as archive:
        pkl = archive.read("archive/data.pkl")
    rng = np.random.default_rng(0)
    outcomes = collections.Counter()
    for trial in range(400):
        data = bytearray(pkl)
        for pos in rng.integers(0, len(data), size=int(rng.integers(1, 4))):
            data[pos] = int(rng.integers(0, 256))
        path = write_zip(tmp_path / f"fuzz{trial % 4}.pt", bytes(data), {"0": WEIGHT.tobytes()})
        try:
            load_checkpoint(path)
            outcomes["loaded"] += 1
        except ZooError as exc:
            assert str(path) in str(exc)
            outcomes[type(exc).__name__] += 1
    whole = source.read_bytes()
    for cut in np.linspace(1, len(whole) - 1, 60).astype(int):
        path = tmp_path / "cut.pt"
        path.write_bytes(whole[:cut])
        with pytest.raises(ZooError, match=r"cut\.pt"):
            load_checkpoint(path)
    assert outcomes["CheckpointFormatError"] + outcomes["UnsafeCheckpointError"] > 100, outcomes


def test_a_missing_file_is_a_zoo_error(tmp_path):
    with pytest.raises(WeightsNotFoundError, match=r"nothing\.pt"):
        read_torch_pickle(tmp_path / "nothing.pt")


def _model_with_metadata(extra: bytes) -> bytes:
    model = module("ultralytics.nn.tasks.DetectionModel", odict())
    return program(P.EMPTY_DICT, P.MARK, text("model"), model, text("extra"), extra, P.SETITEMS)


def test_metadata_that_nests_or_shares_without_end_is_bounded(tmp_path):
    deep = P.EMPTY_LIST * 5000 + P.APPEND * 4999  # a list in a list in a list ...
    ckpt = load_checkpoint(write_zip(tmp_path / "deep.pt", _model_with_metadata(deep)))
    assert "<too deep>" in repr(ckpt.extra)
    # L0 = [], L_k = [L_{k-1}, L_{k-1}]: 2**60 elements when copied naively; the memo shares them.
    shared = P.EMPTY_LIST + P.BINPUT + b"\x00" + P.POP
    for k in range(1, 61):
        shared += P.MARK + P.BINGET + bytes([k - 1]) + P.BINGET + bytes([k - 1]) + P.LIST + P.BINPUT + \
            bytes([k]) + P.POP
    shared += P.BINGET + bytes([60])
    ckpt = load_checkpoint(write_zip(tmp_path / "shared.pt", _model_with_metadata(shared)))
    assert "<cut off>" in repr(ckpt.extra)


def test_a_module_tree_that_contains_itself_is_refused(tmp_path):
    # The model's _modules maps 'self' to the model itself (memo entry 0).
    stub = glob("ultralytics.nn.tasks", "DetectionModel") + P.EMPTY_TUPLE + P.NEWOBJ + P.BINPUT + b"\x00"
    state = P.MARK + text("_parameters") + odict() + text("_modules") + call(glob("collections", "OrderedDict")) \
        + text("self") + P.BINGET + b"\x00" + P.SETITEM + P.DICT + P.BUILD
    path = write_zip(tmp_path / "cycle.pt", program(P.EMPTY_DICT, text("model"), stub, state, P.SETITEM))
    with pytest.raises(CheckpointFormatError, match="contains itself"):
        load_checkpoint(path)


def test_the_errors_name_the_offending_global_or_record(tmp_path):
    path = write_zip(tmp_path / "g.pt", program(call(glob("posix", "system"), text("id"))))
    check_refused(path, UnsafeCheckpointError, "posix.system")
    path = write_zip(tmp_path / "r.pt", program(tensor("3", 2, (2,), (1,))), {"3": b"\x00" * 4})
    check_refused(path, CheckpointFormatError, "archive/data/3", "holds 4 bytes, expected 8")
    path = write_zip(tmp_path / "o.pt", program(tensor("0", 2, (2,), (1,), offset=1)), {"0": b"\x00" * 8})
    check_refused(path, CheckpointFormatError, "overruns storage 0")


# ------------------------------------------------------------------------------ 6. found by an attack audit


def test_compressed_records_are_refused_before_inflating(tmp_path):
    # torch never compresses; a bzip2 or LZMA record is inflated a whole input block at a time, far beyond
    # the size it declares, before zipfile cuts it. So any compression is refused, whatever the sizes say.
    for method in (zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA, zipfile.ZIP_DEFLATED):
        path = tmp_path / f"compressed{method}.pt"
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("archive/data.pkl", program(tensor("0", 1, (1,), (1,))))
            archive.writestr("archive/byteorder", "little")
            archive.writestr(zipfile.ZipInfo("archive/data/0"), bytes(4), compress_type=method)
        check_refused(path, CheckpointFormatError, "archive/data/0", "compressed")


@pytest.mark.parametrize("key", [
    pytest.param(P.EMPTY_TUPLE + P.TUPLE1 * 200_000, id="deep tuple (a C recursion crash when hashed)"),
    pytest.param(P.EMPTY_TUPLE + P.BINPUT + b"\x00" + b"".join(
        P.POP + P.BINGET + bytes([i - 1]) + P.BINGET + bytes([i - 1]) + P.TUPLE2 + P.BINPUT + bytes([i])
        for i in range(1, 60)), id="shared tuple graph (exponential hashing)"),
    pytest.param(P.BINFLOAT + struct.pack(">d", 0.5), id="float (collisions can be chosen)"),
    pytest.param(num(7 * ((1 << 61) - 1)), id="integer beyond the hash modulus (collides with 0)"),
])
def test_only_plain_scalars_are_hashed_as_keys(tmp_path, key):
    for body in (P.EMPTY_DICT + key + text("v") + P.SETITEM,  # SETITEM
                 P.MARK + key + text("v") + P.DICT,  # DICT
                 P.MARK + key + P.FROZENSET,  # FROZENSET
                 P.EMPTY_SET + P.MARK + key + P.ADDITEMS):  # ADDITEMS
        path = write_zip(tmp_path / "key.pt", program(body))
        check_refused(path, CheckpointFormatError, "key or set member")


def test_error_messages_never_render_file_data_at_length(tmp_path):
    shared = P.EMPTY_LIST + P.BINPUT + b"\x00" + P.POP
    for i in range(1, 40):  # L_i = [L_{i-1}, L_{i-1}]: its repr would have 2**40 parts
        shared += P.MARK + P.BINGET + bytes([i - 1]) + P.BINGET + bytes([i - 1]) + P.LIST + P.BINPUT + bytes([i])
        shared += P.POP
    shared += P.BINGET + bytes([39])
    for body in (call(glob("numpy", "dtype"), shared), call(glob("_codecs", "encode"), text("x"), shared)):
        message = check_refused(write_zip(tmp_path / "repr.pt", program(body)), ZooError)
        assert len(message) < 500


def test_one_object_copied_over_and_over_is_refused(tmp_path):
    data = bytes(1 << 20)
    head = P.BINBYTES + struct.pack("<I", len(data)) + data + P.BINPUT + b"\x00" + P.POP
    copies = P.MARK + (call(glob("builtins", "bytearray"), P.BINGET + b"\x00")) * 64 + P.LIST
    path = write_zip(tmp_path / "copies.pt", program(head + copies))
    check_refused(path, CheckpointFormatError, "copied over and over")
    assert _peak_bytes(path) < 16 << 20


def test_a_module_reached_twice_is_refused(tmp_path):
    # M_k has children a and b that are both M_{k-1}: 2**k state-dict keys from a few bytes each.
    leaf = module("torch.nn.modules.conv.Conv2d", odict(weight=tensor("0", 1, (1,), (1,)))) + P.BINPUT + b"\x00"
    levels = b""
    for k in range(1, 30):
        children = odict(a=P.BINGET + bytes([k - 1]), b=P.BINGET + bytes([k - 1]))
        levels += P.POP + module("torch.nn.modules.container.Sequential", odict(), children) + P.BINPUT + bytes([k])
    pkl = program(P.EMPTY_DICT, text("model"), leaf, levels, P.SETITEM)
    path = write_zip(tmp_path / "dag.pt", pkl, {"0": b"\x00" * 4})
    with pytest.raises(CheckpointFormatError, match="reaches a module twice"):
        load_checkpoint(path)


def test_state_dict_copies_are_bounded_by_the_file(tmp_path):
    big = 1 << 18  # one 1 MiB storage referred to under 64 names: 64 MiB of copies
    params = odict(**{f"w{i}": tensor("0", big, (big,), (1,)) for i in range(64)})
    path = write_zip(tmp_path / "tied.pt", program(P.EMPTY_DICT, text("model"),
                                                   module("torch.nn.modules.conv.Conv2d", params), P.SETITEM),
                     {"0": bytes(4 * big)})
    ckpt = load_checkpoint(path)  # the same view 64 times is one tied tensor: one copy
    assert len({t.data_ptr() for t in ckpt.state_dict.values()}) == 1
    shifted = odict(**{f"w{i}": tensor("0", big, (big - i,), (1,), offset=i) for i in range(64)})
    path = write_zip(tmp_path / "views.pt", program(P.EMPTY_DICT, text("model"),
                                                    module("torch.nn.modules.conv.Conv2d", shifted), P.SETITEM),
                     {"0": bytes(4 * big)})
    with pytest.raises(CheckpointFormatError, match="more tensor bytes than the file"):
        load_checkpoint(path)


def test_metadata_budget_covers_every_entry_strings_bytes_and_empty_arrays(tmp_path):
    shared = P.EMPTY_LIST + P.BINPUT + b"\x00" + P.POP
    for i in range(1, 40):
        shared += P.MARK + P.BINGET + bytes([i - 1]) + P.BINGET + bytes([i - 1]) + P.LIST + P.BINPUT + bytes([i])
        shared += P.POP
    many_keys = b"".join(num(k) + P.BINGET + bytes([39]) for k in range(200))  # 200 entries, one shared graph
    string = "s" * (1 << 20)
    body = shared + P.MARK + many_keys + text("long") + text(string) + P.BINPUT + b"\x28" + text("again") + \
        P.MARK + P.BINGET + b"\x28" + P.BINGET + b"\x28" + P.LIST + \
        text("empty") + tensor("0", 0, (1 << 24, 0), (1, 1)) + P.SETITEMS
    model = module("ultralytics.nn.tasks.DetectionModel", odict())
    pkl = program(P.EMPTY_DICT, P.MARK, text("model"), model, text("extra"), P.EMPTY_DICT, body, P.SETITEMS)
    path = write_zip(tmp_path / "meta.pt", pkl, {"0": b""})
    tracemalloc.start()
    try:
        ckpt = load_checkpoint(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "<cut off>" in repr(ckpt.extra) and peak < 256 << 20


def test_an_ordered_dict_cannot_shadow_its_methods(tmp_path):
    params = odict(weight=tensor("0", 2, (2,), (1,))) + P.MARK + text("items") + glob("torch", "Tensor") + \
        P.DICT + P.BUILD
    path = write_zip(tmp_path / "shadow.pt", program(P.EMPTY_DICT, text("model"),
                                                     module("torch.nn.modules.conv.Conv2d", params), P.SETITEM),
                     {"0": b"\x00\x00\x80\x3f" * 2})
    check_refused(path, CheckpointFormatError, "_metadata")


def test_huge_integers_in_shapes_are_refused_at_once(tmp_path):
    huge = num(1 << 200_000)
    body = call(glob("torch._utils", "_rebuild_tensor_v2"), storage("0", 1), num(0), tup(huge, huge),
                tup(num(1), num(1)), P.NEWFALSE, odict())
    path = write_zip(tmp_path / "int.pt", program(body), {"0": b"\x00" * 4})
    check_refused(path, CheckpointFormatError, "a tensor's size", "2**63")


def test_long_names_cannot_inflate_state_dict_keys(tmp_path):
    name = "n" * 3000  # longer than any network's, short enough to pass as a dict key
    inner = module("torch.nn.modules.conv.Conv2d", odict(weight=tensor("0", 1, (1,), (1,))))
    outer = module("ultralytics.nn.tasks.DetectionModel", odict(), odict(**{name: inner}))
    path = write_zip(tmp_path / "names.pt", program(P.EMPTY_DICT, text("model"), outer, P.SETITEM),
                     {"0": b"\x00" * 4})
    with pytest.raises(CheckpointFormatError, match="name that is not a string of at most"):
        load_checkpoint(path)
