"""snn_det_zoo.hub: downloads (against a local http.server), sha256 checks, cache, offline switch, loading."""

from __future__ import annotations

import functools
import hashlib
import http.server
import sys
import threading
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from snn_det_zoo import hub


def tiny() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def server(tmp_path):
    """An http.server on 127.0.0.1 serving tmp_path/srv; yields (base URL, folder, request log)."""
    root = tmp_path / "srv"
    root.mkdir()
    log: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, fmt, *args):
            log.append(self.path)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", root, log
    finally:
        httpd.shutdown()
        httpd.server_close()


def write_safetensors(path: Path, model: nn.Module, prefix: str = "") -> bytes:
    save_file({prefix + k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path.read_bytes()


def test_cache_root_follows_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("SNN_DET_ZOO_HOME", str(tmp_path / "elsewhere"))
    expected = tmp_path / "elsewhere" / "weights" / "spikeyolo_s" / "coco"
    assert hub.weights_dir("spikeyolo_s", "coco") == expected
    with pytest.raises(ValueError, match="invalid tag"):
        hub.weights_dir("spikeyolo_s", "../x")


def test_download_verifies_hash_and_is_atomic(tmp_path, server):
    base, root, log = server
    payload = b"weights-bytes" * 1000
    (root / "w.bin").write_bytes(payload)
    dest = tmp_path / "cache" / "w.bin"
    assert hub.download_url(f"{base}/w.bin", dest, sha(payload)).read_bytes() == payload
    assert len(log) == 1
    hub.download_url(f"{base}/w.bin", dest, sha(payload))  # cached: verified, not fetched again
    assert len(log) == 1

    other = tmp_path / "cache" / "bad.bin"
    with pytest.raises(hub.HashMismatchError, match=f"bad.bin.*expected {'a' * 64}, got {sha(payload)}"):
        hub.download_url(f"{base}/w.bin", other, "a" * 64)
    assert not other.exists() and not list(other.parent.glob("*.part"))  # nothing half-written is left


def test_corrupt_cached_file_is_detected(tmp_path, server):
    base, root, _ = server
    (root / "w.bin").write_bytes(b"good")
    dest = tmp_path / "w.bin"
    dest.write_bytes(b"tampered")
    with pytest.raises(hub.HashMismatchError, match=f"expected {sha(b'good')}, got {sha(b'tampered')}"):
        hub.download_url(f"{base}/w.bin", dest, sha(b"good"))


@pytest.mark.parametrize("switch", ["SNN_DET_ZOO_OFFLINE", "HF_HUB_OFFLINE"])
def test_offline_switch_blocks_downloads(tmp_path, server, monkeypatch, switch):
    base, root, log = server
    (root / "w.bin").write_bytes(b"x")
    monkeypatch.setenv(switch, "1")
    with pytest.raises(hub.OfflineError, match="not cached at"):
        hub.download_url(f"{base}/w.bin", tmp_path / "w.bin", sha(b"x"))
    assert log == []


def test_only_https_or_loopback_http(tmp_path):
    with pytest.raises(ValueError, match="only https://"):
        hub.download_url("http://example.com/w.bin", tmp_path / "w.bin", None)
    with pytest.raises(ValueError, match="only https://"):
        hub.download_url("ftp://127.0.0.1/w.bin", tmp_path / "w.bin", None)


def test_clean_state_dict_strips_wrapper_prefixes():
    sd = {"module._orig_mod.a": torch.zeros(1), "module.b": torch.ones(1), "c": torch.ones(2)}
    assert list(hub.clean_state_dict(sd)) == ["a", "b", "c"]
    with pytest.raises(ValueError, match="appears twice"):
        hub.clean_state_dict({"module.a": torch.zeros(1), "a": torch.zeros(1)})


def test_load_state_dict_file_formats(tmp_path):
    model = tiny()
    write_safetensors(tmp_path / "w.safetensors", model, prefix="module.")
    assert sorted(hub.load_state_dict_file(tmp_path / "w.safetensors")) == sorted(model.state_dict())
    torch.save({"state_dict": model.state_dict()}, tmp_path / "plain.pth")
    assert list(hub.load_state_dict_file(tmp_path / "plain.pth")) == list(model.state_dict())
    torch.save(model, tmp_path / "pickled_module.pt")  # a whole pickled module needs import-weights
    with pytest.raises(ValueError, match="import-weights"):
        hub.load_state_dict_file(tmp_path / "pickled_module.pt")
    (tmp_path / "broken.safetensors").write_bytes(b"\x10" + b"\x00" * 7 + b"{garbage")
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        hub.load_state_dict_file(tmp_path / "broken.safetensors")


def test_load_pretrained_downloads_verifies_and_loads(server):
    base, root, log = server
    source = tiny()
    with torch.no_grad():
        source[1].running_mean.fill_(0.25)
    data = write_safetensors(root / "tiny.safetensors", source)
    entry = {"source": f"{base}/tiny.safetensors", "sha256": sha(data), "format": "safetensors"}
    model = hub.load_pretrained(tiny().apply(lambda m: None), "tiny", "t1", entry)
    assert torch.equal(model[1].running_mean, source[1].running_mean)
    assert (hub.zoo_home() / "downloads" / "tiny" / "t1" / "tiny.safetensors").is_file()
    hub.load_pretrained(tiny(), "tiny", "t1", entry)  # second time: from the verified cache
    assert len(log) == 1


def test_load_pretrained_is_strict_and_lists_keys(tmp_path):
    wrong = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(5))
    data = write_safetensors(tmp_path / "w.safetensors", wrong)
    entry = {"source": f"file:{tmp_path / 'w.safetensors'}", "sha256": sha(data), "format": "safetensors"}
    with pytest.raises(ValueError, match=r"shape mismatches.*1\.weight: \(5,\).*\(4,\)"):
        hub.load_pretrained(tiny(), "tiny", "t1", entry)
    extra = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Linear(2, 2))
    data = write_safetensors(tmp_path / "w.safetensors", extra)
    with pytest.raises(ValueError, match=r"unexpected keys \(not in the model\) \(2\): 2\.bias, 2\.weight"):
        hub.load_pretrained(tiny(), "tiny", "t1", {**entry, "sha256": sha(data)})
    with pytest.raises(hub.HashMismatchError, match="expected"):
        hub.load_pretrained(tiny(), "tiny", "t1", {**entry, "sha256": "0" * 64})


def test_saved_weights_load_offline_and_tampering_is_caught(monkeypatch):
    source = tiny()
    record = {"source": "unit test", "source_sha256": "1" * 64}
    path = hub.save_weights("tiny", "t1", source.state_dict(), record)
    card = hub.read_cached_card("tiny", "t1")
    assert card["sha256"] == hub.sha256_file(path) and card["name"] == "tiny.t1"
    monkeypatch.setenv("SNN_DET_ZOO_OFFLINE", "1")
    entry = {"source": "gdrive:abc", "sha256": None, "format": "ultralytics-pickle"}
    model = hub.load_pretrained(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)), "tiny", "t1", entry)
    assert torch.equal(model[0].weight, source[0].weight)
    with pytest.raises(hub.HashMismatchError, match="card expects"):  # a card pinning the authors' bytes
        hub.load_pretrained(tiny(), "tiny", "t1", {**entry, "sha256": "2" * 64})
    path.write_bytes(path.read_bytes()[:-1] + b"\x00")
    with pytest.raises(hub.HashMismatchError, match=f"cached weights {path}"):
        hub.load_pretrained(tiny(), "tiny", "t1", entry)


def test_google_drive_release_explains_the_manual_import(monkeypatch):
    monkeypatch.setenv("SNN_DET_ZOO_OFFLINE", "1")
    entry = {"source": "gdrive:1rmcUMJztbjFFbbVqW8xwgshKNZel1psZ", "sha256": None,
             "format": "ultralytics-pickle", "how_to_get": "69M_best.pt"}
    with pytest.raises(hub.WeightsNotFoundError) as info:
        hub.load_pretrained(tiny(), "spikeyolo_l", "coco_official", entry)
    message = str(info.value)
    assert "https://drive.google.com/file/d/1rmcUMJztbjFFbbVqW8xwgshKNZel1psZ" in message
    assert "snn-det-zoo import-weights spikeyolo_l.coco_official" in message
    folder = {**entry, "source": "gdrive-folder:1c5p09ZRCFeK1M5wH6zQduJltZalMzQkZ"}
    with pytest.raises(hub.WeightsNotFoundError, match="drive/folders/1c5p09ZRCFeK1M5wH6zQduJltZalMzQkZ"):
        hub.load_pretrained(tiny(), "spikeyolo_s", "coco_official", folder)


def test_optional_dependencies_have_pip_hints(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # makes the import fail
    with pytest.raises(ImportError, match="pip install huggingface_hub"):
        hub.load_pretrained(tiny(), "tiny", "t1", {"source": "hf-hub:org/repo/model.safetensors",
                                                   "sha256": "0" * 64, "format": "safetensors"})
    monkeypatch.setitem(sys.modules, "gdown", None)
    with pytest.raises(hub.WeightsNotFoundError, match="pip install gdown"):
        hub.load_pretrained(tiny(), "tiny", "t1", {"source": "gdrive:abc", "sha256": None,
                                                   "format": "ultralytics-pickle"})
