"""Gen1 readers, representations and dataset, on small files written here in the real formats."""

import functools
import re
import struct

import numpy as np
import pytest
import torch

from snn_det_zoo.data import gen1 as gen1_module
from snn_det_zoo.data.events import (
    bin_edges,
    emsyolo_gen1_input,
    last_event_polarity_frames,
    polarity_histogram,
    spikeyolo_gen1_input,
)
from snn_det_zoo.data.gen1 import EVENT_DTYPE, DatFile, decoder_unavailable_reason, read_boxes, read_dat, write_dat
from snn_det_zoo.data.gen1_dataset import Gen1Detection
from snn_det_zoo.errors import DataFormatError, DataNotFoundError, InvalidArgumentError, ZooError
from snn_det_zoo.labels import BBOX_DTYPE, GEN1_NUM_CLASSES, authors_gen1_targets

HEADER = (
    b"% Data file containing Event2D events.\n% Version 2\n% Date 2019-01-01 00:00:00\n"
    b"% Height 240\n% Width 304\n"
)


def pack(t, x, y, p):
    """One Event2D record, packed by hand: u32 time, then x | y << 14 | p << 28."""
    return struct.pack("<II", t, x | (y << 14) | (p << 28))


def events(rows):
    ev = np.zeros(len(rows), dtype=EVENT_DTYPE)
    for i, (t, x, y, p) in enumerate(rows):
        ev[i] = (t, x, y, p)
    return ev


def random_events(n, t_max, seed=0):
    rng = np.random.default_rng(seed)
    ev = np.zeros(n, dtype=EVENT_DTYPE)
    ev["t"] = np.sort(rng.integers(0, t_max, n))
    ev["x"], ev["y"], ev["p"] = rng.integers(0, 304, n), rng.integers(0, 240, n), rng.integers(0, 2, n)
    return ev


# ---------------------------------------------------------------- .dat reader

needs_decoder = pytest.mark.skipif(
    decoder_unavailable_reason() is not None, reason=f"compiled decoder unavailable: {decoder_unavailable_reason()}"
)


def without_decoder(monkeypatch):
    """Take the compiled decoder away, as where no C compiler works: the NumPy path runs."""
    monkeypatch.setattr(gen1_module, "_library", lambda: (None, "no C compiler found"))


@functools.cache
def scalar_decoder():
    """The compiled decoder without its SSE2 loop: what runs on other CPUs (ARM)."""
    return gen1_module._load_decoder((*gen1_module._DECODER_FLAGS, "-DDAT_SCALAR"))


@pytest.fixture(params=["compiled", "compiled-scalar", "numpy"])
def decoder(request, monkeypatch):
    """Runs a reader test on every decoder: the compiled one (where it builds), its portable loop, and the
    NumPy fallback."""
    if request.param.startswith("compiled") and decoder_unavailable_reason() is not None:
        pytest.skip(f"compiled decoder unavailable: {decoder_unavailable_reason()}")
    if request.param == "compiled-scalar":
        monkeypatch.setattr(gen1_module, "_library", scalar_decoder)
    if request.param == "numpy":
        without_decoder(monkeypatch)
    return request.param



def test_read_dat_decodes_hand_packed_records(tmp_path, decoder):
    path = tmp_path / "a_td.dat"
    rows = [(5, 0, 0, 0), (7, 303, 239, 1), (7, 12, 200, 1), (1_000_000, 150, 3, 0)]
    path.write_bytes(HEADER + bytes([0, 8]) + b"".join(pack(*r) for r in rows))
    ev = read_dat(path)
    assert ev.dtype == EVENT_DTYPE
    assert ev["t"].tolist() == [5, 7, 7, 1_000_000]
    assert ev["x"].tolist() == [0, 303, 12, 150]
    assert ev["y"].tolist() == [0, 239, 200, 3]
    assert ev["p"].tolist() == [0, 1, 1, 0]
    dat = DatFile(path)
    assert (dat.header.height, dat.header.width, dat.header.event_size) == (240, 304, 8)
    assert dat.header.data_offset == len(HEADER) + 2
    assert "Date 2019-01-01 00:00:00" in dat.header.lines


def test_read_dat_without_header(tmp_path, decoder):
    path = tmp_path / "old_td.dat"
    path.write_bytes(pack(1, 2, 3, 1) + pack(4, 5, 6, 0))
    ev = read_dat(path)
    assert ev["t"].tolist() == [1, 4] and ev["x"].tolist() == [2, 5] and ev["p"].tolist() == [1, 0]


def test_time_window_is_half_open_and_exact(tmp_path, decoder):
    ev = random_events(20_000, 3_000_000)
    # Put duplicates on the window edges, the hard case for a binary search.
    ev["t"][5000:5010] = 1_000_000
    ev["t"][9000:9010] = 1_250_000
    ev = ev[np.argsort(ev["t"], kind="stable")]
    path = tmp_path / "w_td.dat"
    write_dat(path, ev)
    for lo, hi in [(1_000_000, 1_250_000), (0, 1), (2_999_999, 10**9), (None, 400_000), (700_000, None)]:
        got = read_dat(path, lo, hi)
        mask = np.ones(len(ev), bool)
        if lo is not None:
            mask &= ev["t"] >= lo
        if hi is not None:
            mask &= ev["t"] < hi
        np.testing.assert_array_equal(got, ev[mask])
    dat = DatFile(path)
    assert dat.index_at(1_000_000) == np.searchsorted(ev["t"], 1_000_000, "left")
    assert dat.last_time == int(ev["t"][-1])


def test_window_read_refuses_a_file_out_of_order_anywhere(tmp_path, decoder):
    ev = random_events(2000, 1_000_000, seed=4)
    path = tmp_path / "part_td.dat"
    write_dat(path, ev)
    data_offset = DatFile(path).header.data_offset
    # Corrupt the last event (time goes backwards). A window far from it used to decode without a word, and a
    # window after the drop could come back empty: the binary search assumes sorted timestamps.
    data = bytearray(path.read_bytes())
    data[-8:-4] = struct.pack("<I", 0)
    path.write_bytes(bytes(data))
    last = len(ev) - 1
    message = (
        rf"part_td\.dat: corrupt event {last} at byte offset {data_offset + 8 * last}: "
        rf"timestamp goes backwards \(0 us after {ev['t'][-2]} us\)"
    )
    for lo, hi in [(0, 500_000), (None, None), (900_000, None)]:
        with pytest.raises(DataFormatError, match=message):
            read_dat(path, lo, hi)
    with pytest.raises(DataFormatError, match=message):
        DatFile(path).index_at(10)


@pytest.mark.parametrize("drop_at", [1, 3, 4, 5, 8, 9])
def test_order_check_sees_steps_across_chunk_boundaries(tmp_path, decoder, monkeypatch, drop_at):
    monkeypatch.setattr(gen1_module, "_CHUNK", 4)  # chunks [0, 4), [4, 8), [8, 10): every boundary tested
    t = [10 * (i + 1) for i in range(10)]
    t[drop_at] = t[drop_at - 1] - 1
    path = tmp_path / "c_td.dat"
    path.write_bytes(HEADER + bytes([0, 8]) + b"".join(pack(ti, 1, 1, 1) for ti in t))
    offset = len(HEADER) + 2 + 8 * drop_at
    with pytest.raises(DataFormatError, match=rf"corrupt event {drop_at} at byte offset {offset}: timestamp goes"):
        read_dat(path, 0, 5)
    ordered = tmp_path / "ok_td.dat"
    write_dat(ordered, events([(int(ti) * 10, 1, 1, 1) for ti in range(10)]))
    assert len(read_dat(ordered, 0, 50)) == 5


def test_truncated_dat_names_file_and_offset(tmp_path):
    path = tmp_path / "cut_td.dat"
    path.write_bytes(HEADER + bytes([0, 8]) + pack(1, 1, 1, 1) + pack(2, 2, 2, 0)[:5])
    with pytest.raises(
        ValueError, match=rf"cut_td\.dat: truncated: 5 trailing bytes at byte offset {len(HEADER) + 10}"
    ):
        read_dat(path)


def test_header_without_type_bytes_is_truncated(tmp_path):
    path = tmp_path / "h_td.dat"
    path.write_bytes(HEADER)
    with pytest.raises(ValueError, match=rf"h_td\.dat: truncated at byte offset {len(HEADER)}"):
        DatFile(path)


def test_unsupported_event_type(tmp_path):
    path = tmp_path / "cd_td.dat"
    path.write_bytes(HEADER + bytes([12, 8]) + pack(1, 1, 1, 1))
    with pytest.raises(ValueError, match="unsupported event type 12"):
        DatFile(path)


def test_corrupt_events_name_the_byte_offset(tmp_path, decoder):
    start = len(HEADER) + 2
    backwards = tmp_path / "b_td.dat"
    backwards.write_bytes(HEADER + bytes([0, 8]) + pack(10, 1, 1, 1) + pack(20, 1, 1, 1) + pack(15, 1, 1, 1))
    with pytest.raises(
        ValueError, match=rf"corrupt event 2 at byte offset {start + 16}: timestamp goes backwards"
    ):
        read_dat(backwards)
    outside = tmp_path / "o_td.dat"
    outside.write_bytes(HEADER + bytes([0, 8]) + pack(10, 1, 1, 1) + pack(20, 400, 1, 1))
    with pytest.raises(ValueError, match=rf"corrupt event 1 at byte offset {start + 8}: x = 400"):
        read_dat(outside)


def test_write_dat_round_trip_and_bad_input(tmp_path, decoder):
    ev = random_events(500, 10**6, seed=3)
    write_dat(tmp_path / "r_td.dat", ev)
    np.testing.assert_array_equal(read_dat(tmp_path / "r_td.dat"), ev)
    with pytest.raises(ValueError, match="sorted"):
        write_dat(tmp_path / "bad_td.dat", ev[::-1])
    assert not (tmp_path / "bad_td.dat").exists()


def outcome(read):
    """What ``read()`` gives: the array, or the type and message of the error it raises."""
    try:
        return read()
    except DataFormatError as exc:
        return type(exc), str(exc)


def on_both_decoders(monkeypatch, read):
    """``outcome(read)`` with the compiled decoder, then with the NumPy fallback."""
    compiled = outcome(read)
    with monkeypatch.context() as m:
        without_decoder(m)
        return compiled, outcome(read)


def dat_file(path, rows, header=HEADER):
    """A ``.dat`` file of hand-packed ``(t, x, y, p)`` rows (``header=b""``: the headerless old format)."""
    path.write_bytes((header + bytes([0, 8]) if header else b"") + b"".join(pack(*r) for r in rows))
    return path


@needs_decoder
def test_both_decoders_give_identical_arrays(tmp_path, monkeypatch):
    ev = random_events(3000, 10**6, seed=11)
    raw = np.empty(len(ev), np.dtype([("t", "<u4"), ("packed", "<u4")]))
    raw["t"] = ev["t"]
    noise = np.random.default_rng(1).integers(0, 8, len(ev)).astype(np.uint32) << 29  # bits of no field
    raw["packed"] = ev["x"].astype(np.uint32) | ev["y"].astype(np.uint32) << 14 | ev["p"].astype(np.uint32) << 28
    raw["packed"] |= noise
    for name, header in (("h_td.dat", HEADER + bytes([0, 8])), ("old_td.dat", b"")):
        path = tmp_path / name
        path.write_bytes(header + raw.tobytes())
        for lo, hi in ((None, None), (250_000, 600_000), (0, 1), (None, 10), (999_000, None)):
            compiled, fallback = on_both_decoders(monkeypatch, lambda p=path, a=lo, b=hi: read_dat(p, a, b))
            expected = ev[((ev["t"] >= (lo or 0)) & (ev["t"] < (hi or 2**40)))]
            assert compiled.dtype == fallback.dtype == EVENT_DTYPE
            assert compiled.tobytes() == fallback.tobytes() == expected.tobytes()
    empty = dat_file(tmp_path / "e_td.dat", [])
    assert [len(a) for a in on_both_decoders(monkeypatch, lambda: read_dat(empty))] == [0, 0]


GOOD = [(10 * (i + 1), i % 304, i % 240, i % 2) for i in range(40)]


@needs_decoder
@pytest.mark.parametrize(
    ("bad", "event", "why"),
    [
        # Several bad events: the first in file order is named, whatever its kind.
        ({3: (5, 1, 1), 5: (60, 1, 240), 7: (80, 400, 1)}, 3, r"timestamp goes backwards \(5 us after 30 us\)"),
        ({2: (30, 304, 1), 6: (1, 1, 1)}, 2, r"x = 304 outside the sensor \(x < 304\)"),
        ({9: (100, 2, 300), 30: (2, 1, 1)}, 9, r"y = 300 outside the sensor \(y < 240\)"),
        # Several checks failing at one event: order, then x, then y.
        ({4: (50, 500, 250)}, 4, r"x = 500 outside the sensor \(x < 304\)"),
        ({4: (1, 1, 250)}, 4, r"timestamp goes backwards \(1 us after 40 us\)"),
        ({39: (400, 303, 240)}, 39, r"y = 240 outside the sensor \(y < 240\)"),
        ({0: (0, 16383, 16383)}, 0, r"x = 16383 outside the sensor \(x < 304\)"),
    ],
)
@pytest.mark.parametrize("chunk", [4, 1 << 16])
def test_both_decoders_refuse_the_same_event_with_the_same_message(tmp_path, monkeypatch, bad, event, why, chunk):
    monkeypatch.setattr(gen1_module, "_CHUNK", chunk)  # 4: the NumPy path sees the bad events in different chunks
    rows = [(*bad[i], 1) if i in bad else r for i, r in enumerate(GOOD)]
    path = dat_file(tmp_path / "bad_td.dat", rows)
    compiled, fallback = on_both_decoders(monkeypatch, lambda: read_dat(path))
    assert compiled == fallback
    assert compiled[0] is DataFormatError
    offset = len(HEADER) + 2 + 8 * event
    assert re.fullmatch(rf".*bad_td\.dat: corrupt event {event} at byte offset {offset}: {why}", compiled[1])


@needs_decoder
def test_both_decoders_check_the_order_of_the_whole_file_before_a_window(tmp_path, monkeypatch):
    # The window [0, 100) holds a bad x; the timestamps go back far after it: a window read checks the order of
    # the whole file first, so the step back is what both decoders name.
    rows = [(10 * (i + 1), 1, 1, 0) for i in range(40)]
    rows[2], rows[35] = (30, 999, 1, 0), (7, 1, 1, 0)
    path = dat_file(tmp_path / "w_td.dat", rows)
    for read in (lambda: read_dat(path, 0, 100), lambda: DatFile(path).index_at(5)):
        compiled, fallback = on_both_decoders(monkeypatch, read)
        assert compiled == fallback
        assert f"corrupt event 35 at byte offset {len(HEADER) + 2 + 8 * 35}: timestamp goes backwards" in compiled[1]
    rows[35] = (360, 1, 1, 0)
    path = dat_file(path, rows)
    compiled, fallback = on_both_decoders(monkeypatch, lambda: read_dat(path, 0, 100))
    assert compiled == fallback and "corrupt event 2 " in compiled[1] and "x = 999 outside" in compiled[1]
    assert [len(a) for a in on_both_decoders(monkeypatch, lambda: read_dat(path, 100, 200))] == [10, 10]


@needs_decoder
@pytest.mark.parametrize(
    ("size_lines", "why"),
    [
        (b"% Height 240\n% Width 0\n", r"x = 5 outside the sensor \(x < 0\)"),
        (b"% Height -3\n% Width 304\n", r"y = 6 outside the sensor \(y < -3\)"),
        (b"% Height 240\n", None),  # no width: x is not checked
        (b"% Width 20000\n% Height 99999999999999999999\n", None),  # above any 14-bit coordinate
    ],
)
def test_both_decoders_read_the_sensor_size_from_the_header_alike(tmp_path, monkeypatch, size_lines, why):
    path = dat_file(tmp_path / "s_td.dat", [(1, 5, 6, 1), (2, 16383, 200, 0)], header=b"% Version 2\n" + size_lines)
    compiled, fallback = on_both_decoders(monkeypatch, lambda: read_dat(path))
    if why is None:
        assert compiled.tobytes() == fallback.tobytes() and compiled["x"].tolist() == [5, 16383]
    else:
        assert compiled == fallback and re.search(rf"corrupt event 0 at byte offset \d+: {why}$", compiled[1])


# ---------------------------------------------------------------- boxes reader


def test_read_boxes_all_dtype_versions(tmp_path):
    old = np.dtype(
        [
            ("ts", "<u8"),
            ("x", "<f4"),
            ("y", "<f4"),
            ("w", "<f4"),
            ("h", "<f4"),
            ("class_id", "u1"),
            ("confidence", "<f4"),
            ("track_id", "<u4"),
        ]
    )
    a = np.zeros(2, old)
    a[0] = (100, 1.5, 2, 30, 40, 1, 0.5, 7)
    a[1] = (200, 3, 4, 50, 60, 0, 1.0, 8)
    np.save(tmp_path / "old_bbox.npy", a)
    no_track = np.dtype(
        [("t", "<i8"), ("x", "<f8"), ("y", "<f8"), ("w", "<f8"), ("h", "<f8"), ("class_id", "<i4")]
    )
    b = np.zeros(3, no_track)
    b["t"] = [5, 5, 9]
    b["w"] = b["h"] = 1
    np.save(tmp_path / "nt_bbox.npy", b)
    c = np.zeros(1, BBOX_DTYPE)
    c[0] = (42, 1, 2, 3, 4, 1, 9, 0.25)
    np.save(tmp_path / "new_bbox.npy", c)

    old_read = read_boxes(tmp_path / "old_bbox.npy")
    assert old_read.dtype == BBOX_DTYPE
    assert old_read["t"].tolist() == [100, 200] and old_read["x"].tolist() == [1.5, 3.0]
    assert old_read["class_confidence"].tolist() == [0.5, 1.0] and old_read["track_id"].tolist() == [7, 8]
    nt = read_boxes(tmp_path / "nt_bbox.npy")
    assert nt["track_id"].tolist() == [0, 1, 2] and nt["class_confidence"].tolist() == [1.0, 1.0, 1.0]
    np.testing.assert_array_equal(read_boxes(tmp_path / "new_bbox.npy"), c)


def test_read_boxes_errors(tmp_path):
    c = np.zeros(4, BBOX_DTYPE)
    c["t"] = [1, 2, 3, 4]
    c["w"] = c["h"] = 10
    np.save(tmp_path / "cut_bbox.npy", c)
    raw = (tmp_path / "cut_bbox.npy").read_bytes()
    header_end = len(raw) - 4 * BBOX_DTYPE.itemsize
    (tmp_path / "cut_bbox.npy").write_bytes(raw[:-50])
    with pytest.raises(
        ValueError, match=rf"cut_bbox\.npy: truncated.*records stop at byte offset {header_end + 80}"
    ):
        read_boxes(tmp_path / "cut_bbox.npy")
    np.save(tmp_path / "plain_bbox.npy", np.zeros((3, 5)))
    with pytest.raises(ValueError, match=re.escape("plain_bbox.npy: expected a structured array")):
        read_boxes(tmp_path / "plain_bbox.npy")
    c["t"] = [1, 3, 2, 4]
    np.save(tmp_path / "order_bbox.npy", c)
    with pytest.raises(ValueError, match=rf"corrupt box 2 at byte offset {header_end + 80}"):
        read_boxes(tmp_path / "order_bbox.npy")
    (tmp_path / "junk_bbox.npy").write_bytes(b"not numpy at all")
    with pytest.raises(ValueError, match=re.escape("junk_bbox.npy: not a .npy file")):
        read_boxes(tmp_path / "junk_bbox.npy")


def label_file(path, dtype=BBOX_DTYPE, **box2):
    """Four good labels (car and pedestrian, sorted in time) in ``dtype``, box 2 overridden by ``box2``."""
    c = np.zeros(4, dtype)
    c["t" if "t" in dtype.names else "ts"] = [1, 2, 3, 4]
    c["x"], c["y"], c["w"], c["h"] = 5, 6, 20, 10
    c["class_id"] = [0, 1, 0, 1]
    for key, value in box2.items():
        c[key][2] = value
    np.save(path, c)
    header_end = path.stat().st_size - 4 * dtype.itemsize
    return header_end + 2 * dtype.itemsize  # the byte offset of box 2


SIGNED_OLD_DTYPE = np.dtype(
    [("ts", "<i8"), ("x", "<f8"), ("y", "<f8"), ("w", "<f8"), ("h", "<f8"), ("class_id", "<i4")]
)


@pytest.mark.parametrize(
    ("dtype", "box2", "why"),
    [
        (BBOX_DTYPE, {"class_id": 2}, r"class_id must be in 0\.\.1 \(2 classes\); got .*class_id 2"),
        (SIGNED_OLD_DTYPE, {"class_id": -1}, r"class_id must be in 0\.\.1 .*class_id -1$"),
        (BBOX_DTYPE, {"x": np.nan}, r"x, y, w and h must be finite; got x nan"),
        (SIGNED_OLD_DTYPE, {"h": np.inf}, r"x, y, w and h must be finite; got .*h inf"),
        (BBOX_DTYPE, {"w": 0}, r"w and h must be > 0; got .*w 0\.0"),
        (SIGNED_OLD_DTYPE, {"h": -3}, r"w and h must be > 0; got .*h -3\.0"),
    ],
)
def test_read_boxes_refuses_labels_no_metric_can_use(tmp_path, dtype, box2, why):
    path = tmp_path / "bad_bbox.npy"
    offset = label_file(path, dtype, **box2)
    with pytest.raises(DataFormatError, match=rf"bad_bbox\.npy: corrupt box 2 at byte offset {offset}: {why}"):
        read_boxes(path)


def test_read_boxes_number_of_classes(tmp_path):
    assert GEN1_NUM_CLASSES == 2  # car = 0, pedestrian = 1
    path = tmp_path / "three_bbox.npy"
    label_file(path, class_id=2)
    assert read_boxes(path, num_classes=3)["class_id"].tolist() == [0, 1, 2, 1]
    with pytest.raises(InvalidArgumentError, match="num_classes must be a positive integer"):
        read_boxes(path, num_classes=0)
    label_file(path)
    assert len(read_boxes(path)) == 4


def test_missing_files_are_data_not_found(tmp_path):
    for read, name in [(read_boxes, "none_bbox.npy"), (DatFile, "none_td.dat"), (read_dat, "none_td.dat")]:
        with pytest.raises(DataNotFoundError, match=re.escape(str(tmp_path / name))) as info:
            read(tmp_path / name)
        assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, ZooError)


def test_authors_targets_keep_last_per_track_and_clamp_like_the_authors():
    boxes = np.zeros(4, BBOX_DTYPE)
    # track 1 twice (the second wins), a box sticking out on the right, a zero-height box.
    boxes[0] = (10, 10, 10, 20, 20, 0, 1, 1)
    boxes[1] = (10, 12, 14, 20, 20, 0, 1, 1)
    boxes[2] = (10, 300, 100, 20, 10, 1, 2, 1)
    boxes[3] = (10, 50, 50, 30, 0, 0, 3, 1)
    labels, xyxy = authors_gen1_targets(boxes, "spikeyolo")
    assert labels.tolist() == [1, 0]  # decreasing track id, zero-height dropped
    # SpikeYOLO: cx = 300 + 10 = 310 clamped to 304, so the box is shifted left to [294, 314].
    np.testing.assert_allclose(xyxy, [[294, 100, 314, 110], [12, 14, 32, 34]])
    _, xyxy_ems = authors_gen1_targets(boxes, "emsyolo")
    np.testing.assert_allclose(xyxy_ems[0], [300, 100, 320, 110])
    with pytest.raises(ValueError, match="style"):
        authors_gen1_targets(boxes, "yolo")


# ---------------------------------------------------------------- representations


def test_bin_edges_follow_pseeloader():
    assert bin_edges(1_000_000, 250_000, 4).tolist() == [750_000, 812_500, 875_000, 937_500, 1_000_000]
    # A window that would start before the recording restarts at 0 (PSEELoader.seek_time resets).
    assert bin_edges(100_000, 250_000, 2).tolist() == [0, 125_000, 250_000]
    with pytest.raises(ValueError, match="T >= 1"):
        bin_edges(0, 250_000, 0)


def test_last_event_polarity_frames_last_write_wins():
    ev = events(
        [
            (0, 1, 2, 1),
            (10, 1, 2, 0),
            (30, 5, 6, 1),
            (49, 5, 6, 1),
            (50, 7, 7, 1),
            (55, 5, 6, 0),
            (100, 0, 0, 1),
        ]
    )
    frames = last_event_polarity_frames(ev, np.array([0, 50, 100]), height=8, width=8)
    assert frames.dtype == np.uint8 and frames.shape == (2, 8, 8)
    expected = np.full((2, 8, 8), 127, np.uint8)
    expected[0, 2, 1] = 0  # ON then OFF: the OFF is last
    expected[0, 6, 5] = 255
    expected[1, 7, 7] = 255
    expected[1, 6, 5] = 0  # t=100 is outside [50, 100)
    np.testing.assert_array_equal(frames, expected)


def test_polarity_histogram_counts():
    ev = events([(0, 1, 2, 1), (10, 1, 2, 1), (20, 1, 2, 0), (60, 3, 3, 0), (99, 3, 3, 0), (100, 0, 0, 1)])
    h = polarity_histogram(ev, np.array([0, 50, 100]), height=4, width=4)
    assert h.shape == (2, 2, 4, 4) and h.dtype == np.float32
    assert h[0, 1, 2, 1] == 2 and h[0, 0, 2, 1] == 1 and h[1, 0, 3, 3] == 2 and h.sum() == 5


def test_spikeyolo_frames_most_recent_first_at_sensor_resolution():
    t_label = 1_000_000
    # One ON event in the most recent bin only: after the time reversal it shows in frame 0.
    ev = events([(t_label - 1000, 100, 120, 1)])
    x = spikeyolo_gen1_input(ev, t_label, T=4)
    assert x.shape == (4, 3, 240, 304) and x.dtype == torch.float32
    assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 0], x[:, 2])
    assert x[0, 0, 120, 100] == 1.0 and torch.all(x[1:] == 127 / 255)
    # Values are k / 255 of the authors' uint8 frames, so the model's transform reads them back exactly.
    assert torch.equal((x * 255).round() / 255, x)


def test_emsyolo_frames_oldest_first_and_head_quirk():
    t_label = 1_000_000
    ev = events([(t_label - 240_000, 10, 10, 0)])  # in the oldest of five 50 ms bins
    x = emsyolo_gen1_input(ev, t_label)
    assert x.shape == (5, 3, 240, 304)
    assert x[0, 0, 10, 10] == 0.0 and torch.all(x[1:] == 127 / 255)
    late = events([(t_label - 10_000, 10, 10, 0)])
    assert torch.all(emsyolo_gen1_input(late, t_label, first_bin_only=True) == 127 / 255)


# ---------------------------------------------------------------- dataset


@pytest.mark.parametrize(
    ("rep", "shape"),
    [("spikeyolo", (4, 3, 240, 304)), ("emsyolo", (5, 3, 240, 304)), ("histogram", (5, 2, 240, 304))],
)
def test_gen1_dataset_yields_frames_per_label_timestamp(tmp_path, gen1_split, rep, shape):
    gen1_split(tmp_path)
    ds = Gen1Detection(tmp_path, "test", representation=rep)
    assert len(ds) == 3
    frames, target = ds[1]
    assert tuple(frames.shape) == shape
    assert target["t"] == 1_100_000 and target["sequence"] == "rec" and target["image_id"] == 2
    assert target["labels"].tolist() == [0]
    torch.testing.assert_close(target["boxes"], torch.tensor([[10.0, 20.0, 50.0, 50.0]]))
    assert len(ds.raw_boxes("rec")) == 5


def test_gen1_histogram_sample_matches_direct_computation(tmp_path, gen1_split):
    gen1_split(tmp_path)
    ds = Gen1Detection(tmp_path, "test", representation="histogram", T=2)
    frames, _ = ds[0]
    ev = read_dat(tmp_path / "test" / "rec_td.dat")
    expected = polarity_histogram(ev, bin_edges(600_000, 250_000, 2))
    np.testing.assert_array_equal(frames.numpy(), expected)
    assert frames.sum() == ((ev["t"] >= 350_000) & (ev["t"] < 600_000)).sum()


def test_gen1_dataset_errors(tmp_path, gen1_split):
    with pytest.raises(DataNotFoundError, match="split folder"):
        Gen1Detection(tmp_path, "test")
    gen1_split(tmp_path)
    with pytest.raises(InvalidArgumentError, match="unknown representation"):
        Gen1Detection(tmp_path, "test", representation="voxel")
    # A label file no metric can use stops the dataset at construction, naming the file.
    labels = read_boxes(tmp_path / "test" / "rec_bbox.npy")
    labels["class_id"][3] = 7
    np.save(tmp_path / "test" / "rec_bbox.npy", labels)
    with pytest.raises(DataFormatError, match=r"rec_bbox\.npy: corrupt box 3 at byte offset \d+: class_id must be"):
        Gen1Detection(tmp_path, "test")
    (tmp_path / "test" / "rec_td.dat").unlink()
    with pytest.raises(DataNotFoundError, match=re.escape("rec_td.dat")):
        Gen1Detection(tmp_path, "test")


def _authors_last_event_frames(events, edges, height=240, width=304):
    """The authors' ``create_data`` step as the SpikeYOLO/EMS-YOLO Gen1 scripts write it: per bin, a grey frame
    and one fancy assignment ``img[y, x] = 255 * p`` in time order (NumPy keeps the last write), and the
    previous zoo definition (np.unique over the reversed pixel indices) -- both must equal the fast path."""
    frames = np.full((len(edges) - 1, height, width), 127, dtype=np.uint8)
    for k in range(len(edges) - 1):
        ev = events[(events["t"] >= edges[k]) & (events["t"] < edges[k + 1])]
        frames[k][ev["y"].astype(np.int64), ev["x"].astype(np.int64)] = 255 * ev["p"].astype(np.uint8)
    return frames


def _unique_last_event_frames(events, edges, height=240, width=304):
    inside = events[(events["t"] >= edges[0]) & (events["t"] < edges[-1])]
    b = np.searchsorted(edges, inside["t"], "right") - 1
    flat = (b * height + inside["y"].astype(np.int64)) * width + inside["x"].astype(np.int64)
    frames = np.full((len(edges) - 1, height, width), 127, dtype=np.uint8)
    _, first_from_end = np.unique(flat[::-1], return_index=True)
    last = len(flat) - 1 - first_from_end
    frames.reshape(-1)[flat[last]] = (255 * inside["p"][last].astype(np.int64)).astype(np.uint8)
    return frames


@pytest.mark.parametrize(("T", "t_label"), [(4, 1_000_000), (5, 1_000_000), (2, 100_000)])
def test_last_event_frames_are_bit_identical_to_the_authors_and_the_sorting_definition(T, t_label):
    from snn_det_zoo.data.events import bin_edges, last_event_polarity_frames

    ev = random_events(60_000, 1_200_000, seed=T)
    ev["t"][100:140] = 750_000  # many events on one bin edge and one pixel: the last one must win
    ev["x"][100:140], ev["y"][100:140] = 7, 9
    ev = ev[np.argsort(ev["t"], kind="stable")]
    edges = bin_edges(t_label, 250_000, T)
    fast = last_event_polarity_frames(ev, edges)
    np.testing.assert_array_equal(fast, _authors_last_event_frames(ev, edges))
    np.testing.assert_array_equal(fast, _unique_last_event_frames(ev, edges))
    assert np.isin(fast, [0, 127, 255]).all() and (fast == 127).any() and (fast == 0).any()


def test_chunked_full_read_equals_the_written_events_at_every_chunk_boundary(tmp_path, decoder, monkeypatch):
    ev = random_events(1000, 10**6, seed=9)
    path = tmp_path / "k_td.dat"
    write_dat(path, ev)
    for chunk in (7, 64, 999, 1000, 4096):  # streamed (readinto) for windows above a chunk, memory map below
        monkeypatch.setattr(gen1_module, "_CHUNK", chunk)
        np.testing.assert_array_equal(read_dat(path), ev)
        dat = DatFile(path)
        np.testing.assert_array_equal(dat.window(200_000, 700_000), ev[(ev["t"] >= 200_000) & (ev["t"] < 700_000)])
    # Bits 29-31 of the packed word are not part of any field: the polarity is bit 28 alone.
    noisy = tmp_path / "n_td.dat"
    noisy.write_bytes(HEADER + bytes([0, 8]) + struct.pack("<II", 5, 3 | (4 << 14) | (0b1110 << 28)))
    out = read_dat(noisy)
    assert out[["x", "y", "p"]].tolist() == [(3, 4, 0)]
