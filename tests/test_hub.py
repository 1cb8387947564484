"""snn_det_zoo.hub: downloads (against a local http.server), sha256 checks, cache, offline switch, loading."""

from __future__ import annotations

import errno
import functools
import hashlib
import http.server
import json
import os
import re
import stat
import sys
import threading
import types
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from snn_det_zoo import hub
from snn_det_zoo.errors import (
    CheckpointFormatError,
    DownloadError,
    InvalidArgumentError,
    MissingDependencyError,
    OfflineError,
    WeightsNotFoundError,
)
from snn_det_zoo.factory import load_pretrained


def tiny() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))


def other(seed: int = 1) -> nn.Module:
    """tiny()'s architecture with other weights."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


RECORD = {"source": "unit test", "source_sha256": "1" * 64}
# An authors' release that cannot be fetched here (offline, Google Drive): loads come from the cache only.
OFFLINE_ENTRY = {"source": "gdrive:abc", "sha256": None, "format": "ultralytics-pickle"}


def cached_weight() -> torch.Tensor:
    """The first weight of tiny.t1 as load_pretrained gives it."""
    return load_pretrained(other(7), "tiny", "t1", OFFLINE_ENTRY)[0].weight


def cached_files() -> list[str]:
    return sorted(p.name for p in hub.weights_dir("tiny", "t1").iterdir())


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


def test_corrupt_cached_file_is_fetched_again(tmp_path, server, monkeypatch):
    base, root, log = server
    (root / "w.bin").write_bytes(b"good")
    dest = tmp_path / "w.bin"
    dest.write_bytes(b"tampered")
    with pytest.warns(UserWarning, match=f"removed the corrupt cached file {dest}"):
        assert hub.download_url(f"{base}/w.bin", dest, sha(b"good")).read_bytes() == b"good"
    assert len(log) == 1
    dest.write_bytes(b"tampered")  # offline, the error says what was removed
    monkeypatch.setenv("SNN_DET_ZOO_OFFLINE", "1")
    removed = re.escape(f"removed the corrupt cached file {dest} (sha256 {sha(b'tampered')}, expected "
                        f"{sha(b'good')})")
    with pytest.warns(UserWarning), pytest.raises(hub.OfflineError, match=removed):
        hub.download_url(f"{base}/w.bin", dest, sha(b"good"))
    assert not dest.exists() and len(log) == 1


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
    model = load_pretrained(tiny().apply(lambda m: None), "tiny", "t1", entry)
    assert torch.equal(model[1].running_mean, source[1].running_mean)
    assert (hub.download_dir("tiny", "t1", entry) / "tiny.safetensors").is_file()
    load_pretrained(tiny(), "tiny", "t1", entry)  # second time: from the verified cache
    assert len(log) == 1


def test_load_pretrained_is_strict_and_lists_keys(tmp_path):
    wrong = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(5))
    data = write_safetensors(tmp_path / "w.safetensors", wrong)
    entry = {"source": f"file:{tmp_path / 'w.safetensors'}", "sha256": sha(data), "format": "safetensors"}
    with pytest.raises(ValueError, match=r"shape mismatches.*1\.weight: \(5,\).*\(4,\)"):
        load_pretrained(tiny(), "tiny", "t1", entry)
    extra = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Linear(2, 2))
    data = write_safetensors(tmp_path / "w.safetensors", extra)
    with pytest.raises(ValueError, match=r"unexpected keys \(not in the model\) \(2\): 2\.bias, 2\.weight"):
        load_pretrained(tiny(), "tiny", "t1", {**entry, "sha256": sha(data)})
    with pytest.raises(hub.HashMismatchError, match="expected"):
        load_pretrained(tiny(), "tiny", "t1", {**entry, "sha256": "0" * 64})


def test_saved_weights_load_offline_and_tampering_is_caught(monkeypatch):
    source = tiny()
    record = {"source": "unit test", "source_sha256": "1" * 64}
    path = hub.save_weights("tiny", "t1", source.state_dict(), record)
    card = hub.read_cached_card("tiny", "t1")
    assert card["sha256"] == hub.sha256_file(path) and card["name"] == "tiny.t1"
    monkeypatch.setenv("SNN_DET_ZOO_OFFLINE", "1")
    entry = {"source": "gdrive:abc", "sha256": None, "format": "ultralytics-pickle"}
    model = load_pretrained(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)), "tiny", "t1", entry)
    assert torch.equal(model[0].weight, source[0].weight)
    with pytest.raises(hub.HashMismatchError, match="card expects"):  # a card pinning the authors' bytes
        load_pretrained(tiny(), "tiny", "t1", {**entry, "sha256": "2" * 64})
    path.write_bytes(path.read_bytes()[:-1] + b"\x00")  # the source cannot be fetched: say what was removed
    with pytest.warns(UserWarning), pytest.raises(hub.WeightsNotFoundError) as info:
        load_pretrained(tiny(), "tiny", "t1", entry)
    message = str(info.value)
    assert f"{path} have sha256" in message and f"card.json says {card['sha256']}; removed them" in message
    assert "snn-det-zoo import-weights tiny.t1" in message
    assert not path.exists() and hub.read_cached_card("tiny", "t1") is None


def test_google_drive_release_explains_the_manual_import(monkeypatch):
    monkeypatch.setenv("SNN_DET_ZOO_OFFLINE", "1")
    entry = {"source": "gdrive:1rmcUMJztbjFFbbVqW8xwgshKNZel1psZ", "sha256": None,
             "format": "ultralytics-pickle", "how_to_get": "69M_best.pt"}
    with pytest.raises(hub.WeightsNotFoundError) as info:
        load_pretrained(tiny(), "spikeyolo_l", "coco_official", entry)
    message = str(info.value)
    assert "https://drive.google.com/file/d/1rmcUMJztbjFFbbVqW8xwgshKNZel1psZ" in message
    assert "snn-det-zoo import-weights spikeyolo_l.coco_official" in message
    folder = {**entry, "source": "gdrive-folder:1c5p09ZRCFeK1M5wH6zQduJltZalMzQkZ"}
    with pytest.raises(hub.WeightsNotFoundError, match="drive/folders/1c5p09ZRCFeK1M5wH6zQduJltZalMzQkZ"):
        load_pretrained(tiny(), "spikeyolo_s", "coco_official", folder)


def test_optional_dependencies_have_pip_hints(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # makes the import fail
    with pytest.raises(ImportError, match="pip install huggingface_hub"):
        load_pretrained(tiny(), "tiny", "t1", {"source": "hf-hub:org/repo/model.safetensors",
                                                   "sha256": "0" * 64, "format": "safetensors"})
    monkeypatch.setitem(sys.modules, "gdown", None)
    with pytest.raises(hub.WeightsNotFoundError, match="pip install gdown"):
        load_pretrained(tiny(), "tiny", "t1", {"source": "gdrive:abc", "sha256": None,
                                                   "format": "ultralytics-pickle"})


# ------------------------------------------------------------------------------ saving: old or new, never none


@pytest.mark.parametrize("failure", ["half-written weights", "card not replaced", "stale file not removed"])
def test_a_failed_save_leaves_a_complete_entry(monkeypatch, failure):
    old, new = tiny(), other(2)
    hub.save_weights("tiny", "t1", old.state_dict(), RECORD)
    monkeypatch.setenv("SNN_DET_ZOO_OFFLINE", "1")
    with monkeypatch.context() as m:
        if failure == "half-written weights":
            real_write = Path.write_bytes

            def write_half(self, data):
                real_write(self, data[: len(data) // 2])
                raise OSError(errno.ENOSPC, "No space left on device")

            m.setattr(Path, "write_bytes", write_half)
        elif failure == "card not replaced":
            real_replace = os.replace

            def replace(src, dst):
                if Path(dst).name == "card.json":
                    raise OSError("killed")
                real_replace(src, dst)

            m.setattr(os, "replace", replace)
        else:
            def remove_stale(folder, keep):
                raise OSError("killed")

            m.setattr(hub, "_remove_stale", remove_stale)
        with pytest.raises(OSError, match=r"No space|killed"):
            hub.save_weights("tiny", "t1", new.state_dict(), RECORD)
    expected = new if failure == "stale file not removed" else old
    assert torch.equal(cached_weight(), expected[0].weight)
    assert not [name for name in cached_files() if name.startswith(".")]  # no temporaries left
    path = hub.save_weights("tiny", "t1", new.state_dict(), RECORD)  # the next save tidies up
    assert cached_files() == sorted(["card.json", path.name])


def test_a_reader_during_a_save_sees_the_old_or_the_new_entry(monkeypatch):
    old, new = tiny(), other(2)
    old_path = hub.save_weights("tiny", "t1", old.state_dict(), RECORD)
    monkeypatch.setenv("SNN_DET_ZOO_OFFLINE", "1")
    seen = []
    real_replace = os.replace

    def replace(src, dst):  # a reader just before and just after the card is replaced
        if Path(dst).name == "card.json":
            seen.append(("before", torch.equal(cached_weight(), old[0].weight)))
        real_replace(src, dst)
        if Path(dst).name == "card.json":
            seen.append(("after", torch.equal(cached_weight(), new[0].weight)))

    with monkeypatch.context() as m:
        m.setattr(os, "replace", replace)
        path = hub.save_weights("tiny", "t1", new.state_dict(), RECORD)
    assert seen == [("before", True), ("after", True)]
    card = hub.read_cached_card("tiny", "t1")
    assert card["file"] == path.name == f"model-{card['sha256'][:16]}.safetensors"
    assert card["sha256"] == hub.sha256_file(path) and not old_path.exists()
    assert cached_files() == sorted(["card.json", path.name])


def test_a_reader_whose_file_a_save_removes_reads_the_new_card(monkeypatch):
    old, new = tiny(), other(2)
    old_path = hub.save_weights("tiny", "t1", old.state_dict(), RECORD)
    monkeypatch.setenv("SNN_DET_ZOO_OFFLINE", "1")
    real_read = Path.read_bytes
    saved = []

    def read_bytes(self):  # the reader has the old card; a whole save happens before it reads the file
        if self == old_path and not saved:
            saved.append(hub.save_weights("tiny", "t1", new.state_dict(), RECORD))
        return real_read(self)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    assert torch.equal(cached_weight(), new[0].weight) and saved and not old_path.exists()


def test_old_entries_without_a_file_name_load_and_are_replaced(monkeypatch):
    folder = hub.weights_dir("tiny", "t1")
    folder.mkdir(parents=True)
    data = write_safetensors(folder / "model.safetensors", tiny())  # the layout of earlier versions
    (folder / "card.json").write_text(json.dumps({"name": "tiny.t1", "sha256": sha(data), **RECORD}))
    monkeypatch.setenv("SNN_DET_ZOO_OFFLINE", "1")
    assert torch.equal(cached_weight(), tiny()[0].weight)
    path = hub.save_weights("tiny", "t1", other(2).state_dict(), RECORD)
    assert path.name != "model.safetensors" and cached_files() == sorted(["card.json", path.name])
    assert torch.equal(cached_weight(), other(2)[0].weight)


def test_an_imported_safetensors_entry_loads_from_the_cache(tmp_path, monkeypatch):
    """The card pins the bytes of the imported file (source_sha256), not of the re-saved cache file."""
    data = write_safetensors(tmp_path / "w.safetensors", tiny())
    hub.save_weights("tiny", "t1", tiny().state_dict(), {"source_sha256": sha(data), "format": "safetensors"})
    monkeypatch.setenv("SNN_DET_ZOO_OFFLINE", "1")
    entry = {"source": "https://example.com/w.safetensors", "sha256": sha(data), "format": "safetensors"}
    assert torch.equal(load_pretrained(other(), "tiny", "t1", entry)[0].weight, tiny()[0].weight)


# ------------------------------------------------------------------------- corrupt cache: removed, fetched again


@pytest.fixture
def fake_convert(monkeypatch):
    """port.convert_file stand-in, as the factory calls it: any file 'converts' to tiny()'s weights; returns the
    calls."""
    calls: list[Path] = []

    def convert_file(arch, tag, path, entry):
        calls.append(Path(path))
        return tiny().state_dict(), {"source": str(path), "source_sha256": hub.sha256_file(path),
                                     "format": entry["format"]}

    monkeypatch.setattr("snn_det_zoo.factory.convert_file", convert_file)
    return calls


def test_corrupt_cache_entry_is_fetched_and_converted_again(server, fake_convert):
    base, root, log = server
    (root / "best.pt").write_bytes(b"authors' checkpoint")
    entry = {"source": f"{base}/best.pt", "sha256": sha(b"authors' checkpoint"), "format": "ultralytics-pickle"}

    def entry_file() -> Path:
        card = hub.read_cached_card("tiny", "t1")
        path = hub.weights_dir("tiny", "t1") / card["file"]
        assert card["sha256"] == hub.sha256_file(path) and cached_files() == sorted(["card.json", path.name])
        return path

    load_pretrained(other(), "tiny", "t1", entry)
    assert len(fake_convert) == 1 and len(log) == 1
    zeros = b"\x00" * 64
    entry_file().write_bytes(zeros)  # converted again from the verified download
    with pytest.warns(UserWarning, match=re.escape(f"have sha256 {sha(zeros)}")):
        model = load_pretrained(other(), "tiny", "t1", entry)
    assert torch.equal(model[0].weight, tiny()[0].weight) and len(fake_convert) == 2 and len(log) == 1
    (hub.download_dir("tiny", "t1", entry) / "best.pt").write_bytes(b"bad")
    entry_file().write_bytes(b"bad")  # both corrupt: downloaded and converted again
    with pytest.warns(UserWarning):
        model = load_pretrained(other(), "tiny", "t1", entry)
    assert torch.equal(model[0].weight, tiny()[0].weight) and len(fake_convert) == 3 and len(log) == 2
    (entry_file().parent / "card.json").write_text("{not json")  # an unreadable card is a corrupt entry too
    with pytest.warns(UserWarning, match="unreadable card.json"):
        load_pretrained(other(), "tiny", "t1", entry)
    assert len(fake_convert) == 4 and entry_file().exists()


def test_corrupt_cache_entry_whose_source_is_gone_says_what_was_removed(server):
    base, _, _ = server
    entry = {"source": f"{base}/gone.pt", "sha256": "1" * 64, "format": "ultralytics-pickle"}
    path = hub.save_weights("tiny", "t1", tiny().state_dict(), RECORD)
    path.write_bytes(b"bad")
    with pytest.warns(UserWarning), pytest.raises(WeightsNotFoundError) as info:
        load_pretrained(other(), "tiny", "t1", entry)
    message = str(info.value)
    assert f"{path} have sha256 {sha(b'bad')}" in message and "removed them" in message
    assert f"{base}/gone.pt failed: HTTP 404" in message and "snn-det-zoo import-weights tiny.t1 PATH" in message


def test_google_drive_corrupt_download_is_fetched_again(monkeypatch, fake_convert):
    payload, calls = b"authors' checkpoint", []

    def download(id, output, quiet):
        calls.append(id)
        Path(output).write_bytes(payload)
        return output

    monkeypatch.setitem(sys.modules, "gdown", types.SimpleNamespace(download=download))
    entry = {"source": "gdrive:abc", "sha256": sha(payload), "format": "ultralytics-pickle"}
    dest = hub.download_dir("tiny", "t1", entry) / "checkpoint.pt"
    dest.parent.mkdir(parents=True)
    dest.write_bytes(b"truncated")
    with pytest.warns(UserWarning, match=f"removed the corrupt cached file {re.escape(str(dest))}"):
        load_pretrained(other(), "tiny", "t1", entry)
    assert calls == ["abc"] and dest.read_bytes() == payload and fake_convert == [dest]

    def broken(id, output, quiet):
        raise RuntimeError("Too many users have viewed or downloaded this file recently")

    monkeypatch.setitem(sys.modules, "gdown", types.SimpleNamespace(download=broken))
    with pytest.raises(WeightsNotFoundError, match=r"drive\.google\.com/file/d/abc.*gdown could not download "
                       "Google Drive file abc: RuntimeError: Too many users"):
        load_pretrained(other(), "tiny", "t2", entry)


def test_hugging_face_failures_are_zoo_errors(monkeypatch, tmp_path):
    class HubError(Exception):  # huggingface_hub's error types differ between its releases
        pass

    data = write_safetensors(tmp_path / "model.safetensors", tiny())
    calls, result = [], []

    def hf_hub_download(repo_id, filename, revision, library_name, local_files_only):
        calls.append((repo_id, filename, revision, local_files_only))
        if not result:
            raise HubError("404 Client Error: Entry Not Found")
        return result[0]

    monkeypatch.setitem(sys.modules, "huggingface_hub", types.SimpleNamespace(hf_hub_download=hf_hub_download))
    entry = {"source": "hf-hub:org/repo@v1/sub/model.safetensors", "sha256": sha(data), "format": "safetensors"}
    with pytest.raises(DownloadError, match=r"hf-hub:org/repo@v1/sub/model\.safetensors failed: HubError: 404"):
        load_pretrained(other(), "tiny", "t1", entry)
    assert calls == [("org/repo", "sub/model.safetensors", "v1", False)]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OfflineError, match="not in huggingface_hub's cache"):
        load_pretrained(other(), "tiny", "t1", entry)
    assert calls[-1][-1] is True
    result.append(str(tmp_path / "model.safetensors"))
    assert torch.equal(load_pretrained(other(), "tiny", "t1", entry)[0].weight, tiny()[0].weight)
    with pytest.raises(InvalidArgumentError, match="must look like"):
        load_pretrained(other(), "tiny", "t1", {**entry, "source": "hf-hub:org/model.safetensors"})


# ------------------------------------------------------------------------------------------ files and errors


def test_written_files_get_normal_permissions(tmp_path, server):
    base, root, _ = server
    (root / "w.bin").write_bytes(b"x" * 100)
    previous = os.umask(0o022)
    try:
        downloaded = hub.download_url(f"{base}/w.bin", tmp_path / "dl" / "w.bin", sha(b"x" * 100))
        weights = hub.save_weights("tiny", "t1", tiny().state_dict(), RECORD)
    finally:
        os.umask(previous)
    for path in (downloaded, weights, weights.parent / "card.json"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path


def test_failures_raise_zoo_errors(tmp_path, monkeypatch):
    with pytest.raises(InvalidArgumentError, match="invalid arch"):
        hub.weights_dir("", "t1")
    with pytest.raises(CheckpointFormatError, match="appears twice"):
        hub.clean_state_dict({"module.a": torch.zeros(1), "a": torch.zeros(1)})
    with pytest.raises(WeightsNotFoundError, match="weights file not found"):
        hub.load_state_dict_file(tmp_path / "nothing.safetensors")
    (tmp_path / "broken.safetensors").write_bytes(b"\x10" + b"\x00" * 7 + b"{garbage")
    with pytest.raises(CheckpointFormatError, match=f"{tmp_path / 'broken.safetensors'}: not a readable"):
        hub.load_state_dict_file(tmp_path / "broken.safetensors")
    torch.save(tiny(), tmp_path / "module.pt")
    with pytest.raises(CheckpointFormatError, match="import-weights"):
        hub.load_state_dict_file(tmp_path / "module.pt")
    with pytest.raises(InvalidArgumentError, match="unsupported source 'ftp://x'"):
        load_pretrained(tiny(), "tiny", "t1", {"source": "ftp://x", "sha256": None, "format": "safetensors"})
    folder = hub.weights_dir("tiny", "t1")
    folder.mkdir(parents=True)
    (folder / "card.json").write_text("[]")
    with pytest.raises(CheckpointFormatError, match="corrupt cache record"):
        hub.read_cached_card("tiny", "t1")
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    with pytest.raises(MissingDependencyError, match="pip install huggingface_hub"):
        load_pretrained(tiny(), "tiny", "t2", {"source": "hf-hub:org/repo/model.safetensors",
                                                   "sha256": None, "format": "safetensors"})


def test_a_cache_card_that_is_not_text_is_a_format_error_naming_it():
    card = hub.weights_dir("tiny", "t1") / "card.json"
    card.parent.mkdir(parents=True)
    card.write_bytes(b"\xff\xfe{")  # not UTF-8: the same error as for corrupt JSON, not a UnicodeDecodeError
    with pytest.raises(CheckpointFormatError, match=rf"{re.escape(str(card))}: unreadable cache record .*delete"):
        hub.read_cached_card("tiny", "t1")
