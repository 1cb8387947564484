"""Weights from Google Drive folders (gdrive-folder: sources), through gdown, against a local imitation of Drive;
trust on first use for files without a published sha256.

The server on 127.0.0.1 answers what gdown (>= 6.3) asks Drive for: the folder listing page
``/embeddedfolderview?id=FOLDER`` (a <title> and one <a href=".../file/d/ID/view"> per file, one
<a href=".../drive/folders/ID"> per subfolder), ``/uc?id=FILE`` (the virus-scan page with its one-line
#download-form) and ``drive.usercontent.google.com/download?id=FILE&...`` (the bytes, Content-Disposition).
gdown builds those https://drive.google.com URLs itself, so the tests send requests' https traffic for
Google's hosts to the local server (requests' HTTPAdapter.send); gdown runs unchanged.
"""

from __future__ import annotations

import hashlib
import html
import http.server
import json
import sys
import threading
import types
import urllib.parse
from pathlib import Path

import pytest
import torch
from torch import nn

import snn_det_zoo as zoo
from snn_det_zoo import _cards, hub
from snn_det_zoo.errors import (
    CardError,
    DownloadError,
    HashMismatchError,
    MissingDependencyError,
    OfflineError,
    WeightsNotFoundError,
)
from snn_det_zoo.factory import load_pretrained
from snn_det_zoo.port import import_weights

FOLDER = "1c5p09ZRCFeK1M5wH6zQduJltZalMzQkZ"  # the SpikeYOLO-s release folder's id (ids are >= 25 characters)
SUBFOLDER = "1SubFolderOfTheReleaseAAAAAAAAAAA"
BEST, LAST = "1BestCheckpointAAAAAAAAAAAAAAAAAA", "1LastCheckpointAAAAAAAAAAAAAAAAAA"
OPT = "1OptYamlAAAAAAAAAAAAAAAAAAAAAAAAA"
GOOGLE = {"drive.google.com", "drive.usercontent.google.com", "docs.google.com"}
ENTRY = {"source": f"gdrive-folder:{FOLDER}", "sha256": None, "format": "ultralytics-pickle",
         "folder_file": "best.pt"}
ARCH, TAG = "spikeyolo_s", "coco_official"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Drive:
    """What the imitation serves: folder id -> (title, [(kind, id, name)]), file id -> (name, bytes)."""

    def __init__(self) -> None:
        self.folders = {
            FOLDER: ("SpikeYOLO", [("file", BEST, "best.pt"), ("file", LAST, "last.pt"),
                                   ("folder", SUBFOLDER, "logs")]),
            SUBFOLDER: ("logs", [("file", OPT, "opt.yaml")]),
        }
        self.files = {BEST: ("best.pt", b"authors' best checkpoint"), LAST: ("last.pt", b"last"),
                      OPT: ("opt.yaml", b"epochs: 300\n")}
        self.log: list[str] = []  # the URLs gdown asked for, with Google's host

    def requests_for(self, path: str) -> list[str]:
        return [url for url in self.log if urllib.parse.urlsplit(url).path == path]


def _listing_page(title: str, children: list[tuple[str, str, str]]) -> str:
    entries = []
    for kind, ident, name in children:
        href = (f"https://drive.google.com/file/d/{ident}/view?usp=drive_web" if kind == "file"
                else f"https://drive.google.com/drive/folders/{ident}")
        entries.append(f'<div class="flip-entry" id="entry-{ident}"><a href="{href}" target="_blank">'
                       f'<div class="flip-entry-info"><div class="flip-entry-title">{html.escape(name)}</div>'
                       "</div></a></div>")
    return (f"<!DOCTYPE html><html><head><title>{html.escape(title)}</title></head><body>"
            f'<div class="flip-entries">{"".join(entries)}</div></body></html>')


def _confirm_page(ident: str) -> str:
    # Drive's "can't scan this file for viruses" page; gdown reads the form line by line, so it is one line.
    return ('<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title></head><body>'
            '<form id="download-form" action="https://drive.usercontent.google.com/download" method="get">'
            '<input type="submit" value="Download anyway"/>'
            f'<input type="hidden" name="id" value="{ident}"><input type="hidden" name="export" value="download">'
            '<input type="hidden" name="confirm" value="t"><input type="hidden" name="uuid" value="0f0f-uuid">'
            "</form></body></html>\n")


@pytest.fixture
def drive(monkeypatch):
    pytest.importorskip("gdown", minversion="6.3")
    import requests.adapters

    state = Drive()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            url = urllib.parse.urlsplit(self.path)
            query = dict(urllib.parse.parse_qsl(url.query))
            state.log.append(f"https://{self.headers.get('X-Google-Host')}{self.path}")
            if url.path == "/embeddedfolderview" and query.get("id") in state.folders:
                self.reply(_listing_page(*state.folders[query["id"]]).encode(), "text/html; charset=utf-8")
            elif url.path == "/uc" and query.get("id") in state.files:
                self.reply(_confirm_page(query["id"]).encode(), "text/html; charset=utf-8")
            elif url.path == "/download" and query.get("confirm") == "t" and query.get("id") in state.files:
                name, data = state.files[query["id"]]
                self.reply(data, "application/octet-stream",
                           {"Content-Disposition": f'attachment; filename="{name}"'})
            else:
                self.reply(b"<html><title>Not Found</title></html>", "text/html", status=404)

        def reply(self, body: bytes, content_type: str, headers: dict | None = None, status: int = 200) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, fmt, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    local = f"127.0.0.1:{httpd.server_address[1]}"
    real_send = requests.adapters.HTTPAdapter.send

    def send(self, request, *args, **kwargs):
        url = urllib.parse.urlsplit(request.url)
        if url.hostname not in GOOGLE:
            raise AssertionError(f"the test reached for {request.url}")
        request.url = urllib.parse.urlunsplit(("http", local, url.path, url.query, ""))
        request.headers["X-Google-Host"] = url.hostname
        kwargs["proxies"] = {}
        return real_send(self, request, *args, **kwargs)

    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", send)
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()


def downloads(entry: dict | None = None) -> Path:
    return hub.download_dir(ARCH, TAG, entry or ENTRY)


def record() -> dict:
    return json.loads(hub.trust_record_path(ARCH, TAG).read_text())


# ------------------------------------------------------------------------------------------- folder listing


def test_the_named_file_is_found_downloaded_and_its_first_digest_recorded(drive, capsys):
    path = hub.fetch_source(ARCH, TAG, ENTRY)
    data = drive.files[BEST][1]
    assert path == downloads() / "best.pt" and path.read_bytes() == data
    assert sorted(p.name for p in downloads().iterdir()) == ["best.pt"]  # no partial files left
    # The listing (and its subfolder) through gdown, then only best.pt: not last.pt, not the logs.
    assert drive.requests_for("/embeddedfolderview") == [f"https://drive.google.com/embeddedfolderview?id={FOLDER}",
                                                         f"https://drive.google.com/embeddedfolderview?id={SUBFOLDER}"]
    assert drive.requests_for("/uc") == [f"https://drive.google.com/uc?id={BEST}"]
    (download,) = drive.requests_for("/download")
    assert download.startswith(f"https://drive.usercontent.google.com/download?id={BEST}&")

    err = capsys.readouterr().err
    first_use = [line for line in err.splitlines() if line.startswith("snn-det-zoo:")]
    assert first_use == [f"snn-det-zoo: {ARCH}.{TAG}: the authors publish no sha256 for best.pt; trusting the file "
                         f"of this first download from now on: sha256 {sha(data)} (recorded in "
                         f"{hub.trust_record_path(ARCH, TAG)}; every later load must match it)"]
    assert hub.trust_record_path(ARCH, TAG) == hub.zoo_home() / "trust" / ARCH / f"{TAG}.json"
    rec = record()
    assert (rec["sha256"], rec["source"], rec["folder_file"], rec["name"]) == (sha(data), ENTRY["source"], "best.pt",
                                                                             f"{ARCH}.{TAG}")
    assert hub.trusted_sha256(ARCH, TAG, ENTRY) == sha(data)

    drive.log.clear()
    assert hub.fetch_source(ARCH, TAG, ENTRY) == path  # verified against the record; no network, printed once
    assert drive.log == [] and "snn-det-zoo:" not in capsys.readouterr().err


def test_a_file_in_a_subfolder_is_named_by_its_path(drive):
    entry = {**ENTRY, "folder_file": "logs/opt.yaml"}
    path = hub.fetch_source(ARCH, TAG, entry)
    assert path == downloads(entry) / "opt.yaml" and path.read_bytes() == b"epochs: 300\n"


def test_a_file_the_folder_lacks_is_an_error_listing_what_it_holds(drive):
    with pytest.raises(WeightsNotFoundError) as info:
        hub.fetch_source(ARCH, TAG, {**ENTRY, "folder_file": "best.pth"})
    message = str(info.value)
    assert f"https://drive.google.com/drive/folders/{FOLDER}" in message and "no file 'best.pth'" in message
    assert message.endswith("the folder holds: best.pt, last.pt, logs/opt.yaml")
    assert drive.requests_for("/uc") == [] and not hub.trust_record_path(ARCH, TAG).exists()


def test_a_folder_drive_refuses_is_a_download_error_that_says_how_to_get_the_file(drive):
    with pytest.raises(DownloadError) as info:
        hub.fetch_source(ARCH, TAG, {**ENTRY, "source": "gdrive-folder:1NotSharedAAAAAAAAAAAAAAAAAAAAAAA"})
    message = str(info.value)
    assert "could not list the Google Drive folder" in message and "status code 404" in message
    assert f"snn-det-zoo import-weights {ARCH}.{TAG} PATH" in message


def test_two_files_of_the_same_name_are_not_guessed_between(drive):
    second = "1SecondBestAAAAAAAAAAAAAAAAAAAAAAA"
    drive.folders[FOLDER][1].append(("file", second, "best.pt"))
    drive.files[second] = ("best.pt", b"another best")
    with pytest.raises(WeightsNotFoundError, match=rf"holds 2 files named 'best.pt' \(ids {BEST}, {second}\)"):
        hub.fetch_source(ARCH, TAG, ENTRY)
    assert drive.requests_for("/uc") == [] and not hub.trust_record_path(ARCH, TAG).exists()


def test_a_failed_file_download_leaves_no_file_and_no_record(drive):
    del drive.files[BEST]  # listed, but Drive answers 404 for the file itself
    with pytest.raises(DownloadError, match=rf"could not download best.pt \(id {BEST}\)"):
        hub.fetch_source(ARCH, TAG, ENTRY)
    folder = downloads()
    assert not folder.exists() or list(folder.iterdir()) == []  # no partial or temporary file left
    assert not hub.trust_record_path(ARCH, TAG).exists()


def test_a_folder_entry_without_folder_file_still_asks_for_the_manual_import():
    with pytest.raises(WeightsNotFoundError, match=f"drive/folders/{FOLDER}.*import-weights {ARCH}.{TAG}"):
        hub.fetch_source(ARCH, TAG, {k: v for k, v in ENTRY.items() if k != "folder_file"})


# ------------------------------------------------------------------------------------------ trust on first use


def test_a_later_download_with_other_bytes_is_refused(drive, capsys):
    first = hub.fetch_source(ARCH, TAG, ENTRY)
    good = sha(first.read_bytes())
    first.write_bytes(b"tampered on disk")  # a damaged local copy is fetched again and checked
    with pytest.warns(UserWarning, match="removed the corrupt cached file"):
        assert hub.fetch_source(ARCH, TAG, ENTRY).read_bytes() == drive.files[BEST][1]
    capsys.readouterr()

    first.unlink()
    replaced = b"someone else's checkpoint"
    drive.files[BEST] = ("best.pt", replaced)  # the file in the folder is replaced
    with pytest.raises(HashMismatchError) as info:
        hub.fetch_source(ARCH, TAG, ENTRY)
    message = str(info.value)
    assert (f"sha256 mismatch for best.pt downloaded from the Google Drive folder https://drive.google.com/drive/"
            f"folders/{FOLDER}: expected {good}, got {sha(replaced)}") in message
    assert f"recorded in {hub.trust_record_path(ARCH, TAG)}" in message
    assert f"delete {hub.trust_record_path(ARCH, TAG)} and try again" in message
    assert not list(downloads().iterdir()) and record()["sha256"] == good  # nothing kept, the record unchanged
    assert "snn-det-zoo:" not in capsys.readouterr().err


def tiny(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))


@pytest.fixture
def fake_convert(monkeypatch):
    """port.convert_file as the factory calls it: any file 'converts' to tiny()'s weights."""

    def convert_file(arch, tag, path, entry):
        return tiny().state_dict(), {"source": str(path), "source_sha256": hub.sha256_file(path),
                                     "format": entry["format"]}

    monkeypatch.setattr("snn_det_zoo.factory.convert_file", convert_file)


def test_pretrained_loads_convert_once_then_check_the_cache_against_the_first_digest(drive, fake_convert,
                                                                                   monkeypatch, capsys):
    model = load_pretrained(tiny(1), ARCH, TAG, ENTRY)  # what create_model(..., pretrained=True) calls
    assert torch.equal(model[0].weight, tiny()[0].weight)
    digest = sha(drive.files[BEST][1])
    assert hub.read_cached_card(ARCH, TAG)["source_sha256"] == digest
    assert capsys.readouterr().err.count(f"sha256 {digest}") == 1

    monkeypatch.setenv("SNN_DET_ZOO_OFFLINE", "1")  # from the cache, checked against the record
    drive.log.clear()
    assert torch.equal(load_pretrained(tiny(1), ARCH, TAG, ENTRY)[0].weight, tiny()[0].weight)
    assert drive.log == [] and "snn-det-zoo:" not in capsys.readouterr().err

    path = hub.trust_record_path(ARCH, TAG)  # the record says another file was seen first
    path.write_text(json.dumps({**record(), "sha256": "e" * 64}))
    with pytest.raises(HashMismatchError) as info:
        load_pretrained(tiny(1), ARCH, TAG, ENTRY)
    message = str(info.value)
    cached = hub.weights_dir(ARCH, TAG) / hub.read_cached_card(ARCH, TAG)["file"]
    assert f"cached weights {cached} come from a file with sha256 {digest}, but expected {'e' * 64}" in message
    assert f"recorded in {path}" in message


def test_import_weights_of_a_card_tag_is_checked_against_the_first_download(tmp_path):
    entry = zoo.model_info(ARCH)["weights"][TAG]  # the real card's entry (sha256: null)
    path = hub.trust_record_path(ARCH, TAG)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"source": entry["source"], "folder_file": entry.get("folder_file"),
                                "sha256": "c" * 64, "first_seen": "2026-01-01T00:00:00+00:00"}))
    (tmp_path / "best.pt").write_bytes(b"another file")
    with pytest.raises(HashMismatchError) as info:
        import_weights(f"{ARCH}.{TAG}", tmp_path / "best.pt")
    message = str(info.value)
    assert f"file {tmp_path / 'best.pt'}: expected {'c' * 64}, got {sha(b'another file')}" in message
    assert f"on 2026-01-01T00:00:00+00:00, recorded in {path}" in message


def test_a_corrupt_record_is_not_replaced_silently(drive):
    hub.fetch_source(ARCH, TAG, ENTRY)
    hub.trust_record_path(ARCH, TAG).write_text("{not json")
    with pytest.raises(hub.CheckpointFormatError, match=r"corrupt first-use record.*delete it to trust"):
        hub.fetch_source(ARCH, TAG, ENTRY)


def test_a_record_of_an_earlier_source_does_not_apply(drive, capsys):
    hub.trust_record_path(ARCH, TAG).parent.mkdir(parents=True)
    hub.trust_record_path(ARCH, TAG).write_text(json.dumps({"source": "gdrive-folder:old", "folder_file": "best.pt",
                                                            "sha256": "d" * 64}))
    hub.fetch_source(ARCH, TAG, ENTRY)
    assert record()["sha256"] == sha(drive.files[BEST][1]) and "trusting the file" in capsys.readouterr().err


def test_a_download_of_an_earlier_source_is_never_trusted_for_a_new_one(drive, fake_convert):
    # The card once named another folder whose best.pt is still cached, converted, under the same name.
    old = {**ENTRY, "source": "gdrive-folder:old"}
    stale = hub.download_dir(ARCH, TAG, old) / "best.pt"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"the old release")
    hub.save_weights(ARCH, TAG, {"w": torch.zeros(1)}, {"source": str(stale), "card_source": old["source"]})
    path = hub.fetch_source(ARCH, TAG, ENTRY)
    assert path != stale and path.read_bytes() == drive.files[BEST][1] and record()["sha256"] == sha(path.read_bytes())
    with pytest.warns(UserWarning, match="were made from gdrive-folder:old, but the model card now names"):
        with pytest.raises(hub.CorruptCacheEntry):
            hub.cached_weights(ARCH, TAG, ENTRY)
    assert hub.read_cached_card(ARCH, TAG) is None  # removed, so that the new release is converted instead


# ------------------------------------------------------------------------------------- offline, no gdown


def test_offline_switch_is_honoured_before_anything_is_fetched(monkeypatch):
    monkeypatch.setenv("SNN_DET_ZOO_OFFLINE", "1")
    monkeypatch.setitem(sys.modules, "gdown", None)  # not even imported
    with pytest.raises(OfflineError) as info:
        hub.fetch_source(ARCH, TAG, ENTRY)
    message = str(info.value)
    assert f"best.pt of the Google Drive folder https://drive.google.com/drive/folders/{FOLDER}" in message
    assert "downloads are off" in message and f"snn-det-zoo import-weights {ARCH}.{TAG} PATH" in message
    with pytest.raises(OfflineError):
        load_pretrained(tiny(), ARCH, TAG, ENTRY)


def test_without_gdown_the_error_gives_the_pip_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "gdown", None)  # makes the import fail
    with pytest.raises(MissingDependencyError, match=r"need gdown 6\.3 or newer: pip install gdown") as info:
        load_pretrained(tiny(), ARCH, TAG, ENTRY)
    assert f"import-weights {ARCH}.{TAG}" in str(info.value)
    monkeypatch.setitem(sys.modules, "gdown", types.SimpleNamespace(__version__="5.2.2"))
    with pytest.raises(MissingDependencyError, match=r"found 5\.2\.2: pip install -U gdown"):
        hub.fetch_source(ARCH, TAG, ENTRY)


# ------------------------------------------------------------------------------------------------ card schema


def _card(**weights_fields):
    entry = {"source": f"gdrive-folder:{FOLDER}", "sha256": None, "format": "ultralytics-pickle", "license": "l",
             "origin": "o", "categories": "c", **weights_fields}
    return {"family": "f", "title": "t", "paper": {"title": "p", "authors": "a", "venue": "v"},
            "origin": {"repo": "r", "commit": "c", "license": "l"},
            "variants": {"m": {"description": "x", "num_params": 1, "defaults": {}, "weights": {"w": entry}}}}


def test_folder_file_in_the_card_schema():
    _cards.validate_card("card.yaml", _card(folder_file="best.pt"))
    _cards.validate_card("card.yaml", _card(folder_file="weights/best.pt"))
    for bad in ("", "../best.pt", "/best.pt", "a//b", "a\\b", 3):
        with pytest.raises(CardError, match="folder_file"):
            _cards.validate_card("card.yaml", _card(folder_file=bad))
    with pytest.raises(CardError, match="only a gdrive-folder: source"):
        _cards.validate_card("card.yaml", _card(source="gdrive:abc", folder_file="best.pt"))
