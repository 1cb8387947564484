"""``snn-det-zoo predict``: pictures with boxes, GIFs of recordings and a JSON that equals ``model.predict``."""

from __future__ import annotations

import json
import shutil
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

import snn_det_zoo as zoo
from snn_det_zoo.cli import main
from snn_det_zoo.data.gen1 import EVENT_DTYPE, write_dat
from snn_det_zoo.data.gen1_dataset import REPRESENTATIONS
from snn_det_zoo.data.synthetic import SyntheticEvents, SyntheticShapes
from snn_det_zoo.errors import DataFormatError, DataNotFoundError, InvalidArgumentError
from snn_det_zoo.predict import MAX_WINDOWS, RecordingWindows, collect_inputs, draw_detections, render_events, visible


@pytest.fixture(scope="module")
def shape_images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    data = SyntheticShapes(3, 128, seed=5, split="val")
    for i in range(3):
        pixels = (data[i][0] * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
        Image.fromarray(pixels).save(folder / f"img{i}.png")
    return folder


def _read(path):
    with Image.open(path) as image:
        return torch.from_numpy(np.asarray(image.convert("RGB")).copy()).permute(2, 0, 1)


def _json(out):
    return json.loads((out / "detections.json").read_text())


def _same(record, det, names):
    assert [d["label"] for d in record["detections"]] == det["labels"].tolist()
    assert [d["name"] for d in record["detections"]] == [names[i] for i in det["labels"].tolist()]
    boxes = torch.tensor([d["box"] for d in record["detections"]]).reshape(-1, 4)
    torch.testing.assert_close(boxes, det["boxes"].float(), atol=0.01, rtol=0)
    scores = torch.tensor([d["score"] for d in record["detections"]])
    torch.testing.assert_close(scores, det["scores"].float(), atol=1e-4, rtol=0)


def test_images_get_boxes_names_and_a_json_equal_to_model_predict(shape_images, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["predict", "spikeyolo_tiny.shapes", str(shape_images), "--out", str(out), "--device", "cpu"]) == 0
    assert "wrote 3 pictures" in capsys.readouterr().out
    record = _json(out)
    assert record["model"] == "spikeyolo_tiny.shapes" and record["score_thresh"] == 0.25
    model = zoo.create_model("spikeyolo_tiny.shapes", pretrained=True)
    images = [_read(shape_images / f"img{i}.png") for i in range(3)]
    expected = model.predict(images, score_thresh=0.25)
    assert [r["input"] for r in record["inputs"]] == [str(shape_images / f"img{i}.png") for i in range(3)]
    assert sum(len(r["detections"]) for r in record["inputs"]) > 0  # trained weights find the shapes
    for r, det in zip(record["inputs"], expected, strict=True):
        _same(r, visible(det), model.class_names)
    assert [(r["picture"], r["height"], r["width"]) for r in record["inputs"]] == [
        (f"img{i}.png", 128, 128) for i in range(3)]
    drawn = _read(out / "img0.png")
    assert drawn.shape == (3, 384, 384)  # enlarged 3x for readable labels
    plain = images[0].repeat_interleave(3, -2).repeat_interleave(3, -1)
    assert (drawn != plain).any(dim=0).float().mean() > 0.002  # the boxes and labels are on it


def test_a_recording_gives_one_picture_per_window_a_gif_and_the_model_s_detections(tmp_path):
    data = SyntheticEvents(2, T=2, image_size=(240, 304), seed=2, split="val")
    events = np.concatenate([data.events(i) for i in range(2)])
    path = tmp_path / "drive_td.dat"
    write_dat(path, events)
    out = tmp_path / "out"
    argv = ["predict", "spikeyolo_tiny.shapes_events", str(path), "--out", str(out), "--every-ms", "125",
            "--device", "cpu"]
    assert main(argv) == 0
    record = _json(out)
    times = [r["t_ms"] for r in record["inputs"]]
    assert times == [250.0, 375.0, 500.0]  # until the window that holds the last event (< 500 ms)
    with Image.open(out / "drive_td.gif") as gif:
        assert gif.n_frames == 3 and gif.size == (608, 480)
    assert sorted(p.name for p in (out / "drive_td").iterdir()) == ["0000250.000ms.png", "0000375.000ms.png",
                                                                     "0000500.000ms.png"]
    model = zoo.create_model("spikeyolo_tiny.shapes_events", pretrained=True)
    make = REPRESENTATIONS[model.event_representation].make
    for r in record["inputs"]:
        t = int(r["t_ms"] * 1000)
        window = events[(events["t"] >= t - 250_000) & (events["t"] < t)]
        assert r["events"] == len(window)
        (det,) = model.predict([make(window, t, T=model.T, window_us=250_000)], score_thresh=0.25)
        _same(r, visible(det), model.class_names)


def test_rendered_events_show_each_pixel_s_last_polarity():
    events = np.zeros(3, dtype=EVENT_DTYPE)
    events["t"], events["x"], events["y"], events["p"] = [1, 2, 3], [0, 0, 2], [0, 0, 1], [1, 0, 1]
    picture = render_events(events, 2, 3)
    assert picture.shape == (3, 2, 3) and picture.dtype == torch.uint8
    on, off, white = picture[:, 1, 2].tolist(), picture[:, 0, 0].tolist(), picture[:, 0, 1].tolist()
    assert white == [255, 255, 255] and off != on and off != white  # (0, 0): ON then OFF, the OFF shows
    with pytest.raises(DataFormatError, match="outside the 2x2 sensor"):
        render_events(events, 2, 2)


def test_draw_detections_without_boxes_only_enlarges():
    image = torch.randint(0, 256, (3, 100, 50), dtype=torch.uint8)
    empty = {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.int64)}
    assert torch.equal(draw_detections(image, empty, ["a"]), image.repeat_interleave(4, -2).repeat_interleave(4, -1))


def test_windows_and_bad_input_are_explained(tmp_path, shape_images, capsys):
    assert RecordingWindows(window_ms=100, every_ms=50, start_ms=10, end_ms=210).times_us(10**9) == [
        110_000, 160_000, 210_000]
    with pytest.raises(InvalidArgumentError, match="after the end of the span"):
        RecordingWindows(end_ms=100).times_us(10**6)
    with pytest.raises(InvalidArgumentError, match="at least 1 us"):
        RecordingWindows(every_ms=0.0001).times_us(10**6)
    with pytest.raises(InvalidArgumentError, match="finite number"):
        RecordingWindows(window_ms=float("nan")).times_us(10**6)
    with pytest.raises(InvalidArgumentError, match=f"more than {MAX_WINDOWS}: raise --every-ms"):
        RecordingWindows(every_ms=0.001, end_ms=1e9).times_us(10**6)  # refused before any window is made
    with pytest.raises(InvalidArgumentError, match="--start-ms 5000 is after the recording's last event"):
        RecordingWindows(start_ms=5000).times_us(10**6)
    # Whole microseconds, one name each: steps below 0.1 ms no longer collide.
    assert RecordingWindows(window_ms=1, every_ms=0.05, end_ms=2).times_us(10**6) == list(range(1000, 2001, 50))
    with pytest.raises(DataNotFoundError, match="no such file or folder"):
        collect_inputs([tmp_path / "missing.png"])
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InvalidArgumentError, match=r"notes\.txt: not an image"):
        collect_inputs([tmp_path / "notes.txt"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataNotFoundError, match="empty: no image"):
        collect_inputs([tmp_path / "empty"])
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    out = tmp_path / "out"
    cases = {
        "broken.png: cannot decode the image": ["spikeyolo_tiny.shapes", str(tmp_path / "broken.png")],
        "takes images (its modality is 'image')": ["spikeyolo_tiny.shapes", str(tmp_path / "x.dat")],
        "takes event recordings (.dat)": ["spikeyolo_tiny.shapes_events", str(shape_images / "img0.png")],
        "has no weights of the zoo's": ["spikeyolo_n", str(shape_images)],
        "write the same pictures (img0)": ["spikeyolo_tiny.shapes", str(shape_images / "img0.png"),
                                           str(shape_images / "img0.png")],
    }
    (tmp_path / "x.dat").write_bytes(b"")
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    shutil.copyfile(shape_images / "img0.png", tmp_path / "...png")  # its stem is ".."
    Image.new("L", (1, 1)).save(tmp_path / "bomb.png")
    bomb = bytearray((tmp_path / "bomb.png").read_bytes())
    bomb[16:24] = (30000).to_bytes(4, "big") * 2  # IHDR declares 30000 x 30000 in a tiny file ...
    bomb[29:33] = zlib.crc32(bytes(bomb[12:29])).to_bytes(4, "big")  # ... with a valid checksum
    (tmp_path / "bomb.png").write_bytes(bytes(bomb))
    cases.update({
        "empty_td.dat: no events in this recording": ["spikeyolo_tiny.shapes_events", str(tmp_path / "empty_td.dat")],
        "cannot write into the folder": ["spikeyolo_tiny.shapes", str(shape_images), "--out", str(a_file / "sub")],
        "...png: its name gives no picture name": ["spikeyolo_tiny.shapes", str(tmp_path / "...png")],
        "bomb.png: too many pixels to decode safely": ["spikeyolo_tiny.shapes", str(tmp_path / "bomb.png")],
        "spikeyolo_tiny.shapes_events takes event recordings": ["spikeyolo_tiny.shapes_events",
                                                               str(shape_images / "img1.png")],
    })
    (tmp_path / "empty_td.dat").write_bytes(b"")
    for expected, argv in cases.items():
        assert main(["predict", "--out", str(out), "--device", "cpu", *argv]) == 2, expected
        assert expected in capsys.readouterr().err, expected
    assert not out.exists()  # nothing half-written
    # A folder holding both kinds gives each model its own kind; none of it is an error naming what is missing.
    (tmp_path / "mixed").mkdir()
    (tmp_path / "mixed" / "a_td.dat").write_bytes(b"")
    shutil.copyfile(shape_images / "img0.png", tmp_path / "mixed" / "img0.png")
    assert collect_inputs([tmp_path / "mixed"], "image") == [tmp_path / "mixed" / "img0.png"]
    assert collect_inputs([tmp_path / "mixed"], "recording") == [tmp_path / "mixed" / "a_td.dat"]
    with pytest.raises(DataNotFoundError, match=r"images0: no \.dat recording in this folder"):
        collect_inputs([shape_images], "recording")


def test_thresholds_are_checked_by_the_parser_in_the_option_s_name(capsys, shape_images):
    for option, value, words in (("--score-thresh", "2", "needs a number in [0, 1]"),
                                 ("--iou-thresh", "nan", "needs a number in [0, 1]"),
                                 ("--batch-size", "0", "needs a whole number of at least 1")):
        with pytest.raises(SystemExit) as exit_info:
            main(["predict", "spikeyolo_tiny.shapes", str(shape_images), option, value])
        assert exit_info.value.code == 2
        assert f"argument {option}: {words}" in capsys.readouterr().err
