"""Weights by name: sources, full-sha256 checks, the local cache, safetensors, offline use.

Shaped after timm's ``_hub.py``/``_helpers.py``. A weights entry of a model card names a ``source``
(``https://...``, ``hf-hub:org/repo[@rev]/file``, ``gdrive:<id>``, ``gdrive-folder:<id>``, ``file:<path>``),
a full ``sha256`` (``null`` only for authors' releases no maintainer has seen) and a ``format``
(``safetensors``, or an authors' pickle that :mod:`snn_det_zoo.port` converts).

Cache layout under ``$SNN_DET_ZOO_HOME`` (default ``~/.cache/snn_det_zoo``)::

    weights/<arch>/<tag>/model-<sha16>.safetensors  the state dict, exactly the model's keys; <sha16> is the
                                                    first 16 hex digits of the file's sha256
    weights/<arch>/<tag>/card.json                  ``file`` (the name above), its full ``sha256``, the
                                                    ``source_sha256`` of the file it was made from; source,
                                                    variant
    downloads/<arch>/<tag>/<file>                   verified downloads of sources
    trust/<arch>/<tag>.json                         the sha256 of the file first downloaded for an entry whose
                                                    card states none (trust on first use, below)

The paths themselves (:func:`zoo_home`, :func:`weights_dir`) are defined in :mod:`snn_det_zoo.registry`, which
lists the user's own weights without torch; this module re-exports them.

:func:`save_weights` writes the new safetensors under its content name first, then replaces ``card.json``
atomically, then removes the files no card names: a crash at any point leaves the old complete entry or the
new one, and a card only ever names a file that has its hash. A directory without ``card.json`` is ignored;
a card without ``file`` (written by older versions) means ``model.safetensors``. Cached files are verified
again before use; a corrupt one (in ``downloads/``, or an entry whose file does not match its card) is
removed and fetched or converted again, and when that is not possible the error says what was removed and
how to get the weights.

Weights the user imported under a tag of their own (``card.json`` with ``"kind": "user"``, see
:mod:`snn_det_zoo.registry`) have no source to fetch again: :func:`cached_user_weights` never removes them,
and a corrupt one is an error that says to import the file again.

A ``gdrive-folder:<id>`` source names a Google Drive folder; its entry's ``folder_file`` names the file to take
from it. gdown lists the folder (``gdown.download_folder(..., skip_download=True)``) and downloads that file
(``gdown.download``); without ``folder_file`` the user is told to download by hand. Trust on first use: for a
downloaded source whose entry has ``sha256: null`` (the authors publish no digest), the sha256 of the file seen
on the first download is recorded under ``trust/`` and printed once on stderr; every later load, from the cache
or a new download, must match it (:class:`HashMismatchError` otherwise, naming the file, both hashes and the
record). Deleting the record trusts the next file anew.

Downloads (:func:`download_url`): only ``https://`` URLs, or ``http://`` to this machine (local mirrors,
tests). Every redirect target is checked the same way, a redirect may not change the scheme, and at most
10 are followed. Each read has a ``timeout`` and the whole transfer a ``deadline_s``. Without a ``sha256``
to verify them, the bytes are trusted only when the response has a ``Content-Length``; with or without a
hash, a transfer that delivers more or fewer bytes than its ``Content-Length`` fails. Files are written to
a temporary name, verified, then moved into place with ``os.replace``. Every network access goes through
:func:`download_url`, :func:`_fetch_hf_hub`, :func:`_fetch_gdrive` or :func:`_fetch_gdrive_folder`, which
obey ``SNN_DET_ZOO_OFFLINE=1`` and ``HF_HUB_OFFLINE=1``.

Failures raise the errors of :mod:`snn_det_zoo.errors` (:class:`DownloadError` for HTTP, connection and
transfer failures; :class:`HashMismatchError`, :class:`OfflineError`, :class:`WeightsNotFoundError`,
:class:`MissingDependencyError`, :class:`CheckpointFormatError`, :class:`InvalidArgumentError`).
"""

from __future__ import annotations

import datetime
import glob
import hashlib
import http.client
import ipaddress
import json
import os
import re
import secrets
import shlex
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ._atomic import atomic_path
from ._cards import catalog_file
from .errors import (
    CheckpointFormatError,
    DownloadError,
    HashMismatchError,
    InvalidArgumentError,
    MissingDependencyError,
    OfflineError,
    WeightsNotFoundError,
    ZooError,
)
from .registry import (
    USER_KIND,
    WEIGHTS_FILE,
    cache_card_file,
    read_cache_record,
    user_weights_card,
    weights_dir,
    zoo_home,
)

__all__ = [
    "CorruptCacheEntry",
    "DownloadError",
    "HashMismatchError",
    "OfflineError",
    "WeightsNotFoundError",
    "cached_user_weights",
    "cached_weights",
    "clean_state_dict",
    "download_url",
    "fetch_source",
    "is_offline",
    "load_state_dict_file",
    "read_cached_card",
    "save_weights",
    "sha256_file",
    "trust_record_path",
    "trusted_sha256",
    "verify_entry_file",
    "verify_sha256",
    "weights_dir",
    "zoo_home",
]

_TRUE = {"1", "true", "yes", "on"}
_CHUNK = 1 << 20
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


# ----------------------------------------------------------------------------------------------------------
# Paths, switches, hashes


def is_offline() -> bool:
    """Whether ``SNN_DET_ZOO_OFFLINE`` or ``HF_HUB_OFFLINE`` forbids network access."""
    switches = ("SNN_DET_ZOO_OFFLINE", "HF_HUB_OFFLINE")
    return any(os.environ.get(name, "").strip().lower() in _TRUE for name in switches)


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Full hex sha256 of a file."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def verify_sha256(path: Path, expected: str | None, what: str) -> str:
    """The sha256 of ``path``; HashMismatchError (naming ``what``, file, both hashes) if not ``expected``."""
    actual = sha256_file(path)
    if expected is not None and actual != expected.lower():
        raise HashMismatchError(f"sha256 mismatch for {what} {path}: expected {expected}, got {actual}")
    return actual


def _check_sha256_argument(sha256: str | None) -> None:
    if sha256 is not None and not (isinstance(sha256, str) and _SHA256.fullmatch(sha256)):
        raise InvalidArgumentError(f"sha256 must be 64 hex digits or None, got {sha256!r}")


def _drop_if_corrupt(path: Path, sha256: str | None) -> str:
    """Remove ``path`` when it exists without the bytes of ``sha256``; returns what was removed ('' if not)."""
    if sha256 is None or not path.is_file():
        return ""
    actual = sha256_file(path)
    if actual == sha256.lower():
        return ""
    path.unlink(missing_ok=True)
    note = f"removed the corrupt cached file {path} (sha256 {actual}, expected {sha256})"
    warnings.warn(f"{note}; fetching it again", stacklevel=3)
    return note


# ----------------------------------------------------------------------------------------------------------
# Trust on first use: downloaded files whose weights entry states no sha256

_NETWORK_SOURCES = ("https://", "http://", "hf-hub:", "gdrive:", "gdrive-folder:")


def trust_record_path(arch: str, tag: str) -> Path:
    """Where the sha256 of the file first downloaded for ``arch.tag`` is recorded: ``trust/<arch>/<tag>.json``.

    Outside ``weights/`` and ``downloads/``, so that clearing the cache does not reset what is trusted.
    """
    weights_dir(arch, tag)  # the same checks of both names
    return zoo_home() / "trust" / arch / f"{tag}.json"


def _trust_record(arch: str, tag: str, entry: Mapping[str, Any]) -> dict[str, Any] | None:
    """The first-use record that vouches for the entry's file; ``None`` when the entry states its own sha256,
    is not downloaded, or nothing was recorded for its source (a record of another source does not apply)."""
    if entry.get("sha256") is not None or not str(entry["source"]).startswith(_NETWORK_SOURCES):
        return None
    path = trust_record_path(arch, tag)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    # A damaged record is not silently replaced: that would trust whatever the next download brings.
    reset = f"delete it to trust the next download of {arch}.{tag}"
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CheckpointFormatError(f"{path}: corrupt first-use record ({exc}); {reset}") from exc
    if not isinstance(record, dict) or not _SHA256.fullmatch(str(record.get("sha256"))):
        raise CheckpointFormatError(f"{path}: corrupt first-use record (no valid sha256); {reset}")
    same = record.get("source") == str(entry["source"]) and record.get("folder_file") == entry.get("folder_file")
    return record if same else None


def trusted_sha256(arch: str, tag: str, entry: Mapping[str, Any]) -> str | None:
    """The sha256 recorded when the file of ``arch.tag`` (an entry with ``sha256: null``) was first downloaded;
    ``None`` when no record applies."""
    record = _trust_record(arch, tag, entry)
    return None if record is None else str(record["sha256"]).lower()


def _trust_note(arch: str, tag: str, record: Mapping[str, Any]) -> str:
    path = trust_record_path(arch, tag)
    return (f" (the authors publish no sha256 for {arch}.{tag}; {record['sha256']} is the one of the file first "
            f"downloaded for it, on {record.get('first_seen', '?')}, recorded in {path}). If the authors have "
            f"replaced the file and you trust the new one, delete {path} and try again")


def _expected_source_sha256(arch: str, tag: str, entry: Mapping[str, Any]) -> tuple[str | None, str]:
    """The sha256 the entry's file must have (published, else first seen) and what to add to a mismatch."""
    record = _trust_record(arch, tag, entry)
    if record is not None:
        return str(record["sha256"]).lower(), _trust_note(arch, tag, record)
    return entry.get("sha256"), ""


def verify_entry_file(arch: str, tag: str, entry: Mapping[str, Any], path: str | os.PathLike[str]) -> str:
    """The sha256 of ``path``, checked against the entry's sha256, else against the one first downloaded.

    Raises:
        HashMismatchError: naming the file, both hashes and, for a first-use digest, where it is recorded.
    """
    expected, note = _expected_source_sha256(arch, tag, entry)
    actual = sha256_file(path)
    if expected is not None and actual != expected.lower():
        raise HashMismatchError(f"sha256 mismatch for weights {arch}.{tag}: file {path}: expected {expected}, got "
                                f"{actual}{note}")
    return actual


def _create_new(dest: Path, data: bytes) -> bool:
    """Write ``dest`` complete or not at all, only if it does not exist yet; whether it was written."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies, as for the cache
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        try:
            os.link(tmp, dest)  # fails where dest exists: of two first downloads, one records
        except FileExistsError:
            return False
        except OSError:  # a file system without hard links
            if dest.exists():
                return False
            os.replace(tmp, dest)
        return True
    finally:
        tmp.unlink(missing_ok=True)


def _record_first_use(arch: str, tag: str, entry: Mapping[str, Any], path: Path) -> str:
    """Record the sha256 of the first file downloaded for ``arch.tag`` and say so once on stderr."""
    digest = sha256_file(path)
    record_path = trust_record_path(arch, tag)
    record = {"name": f"{arch}.{tag}", "source": str(entry["source"]), "folder_file": entry.get("folder_file"),
              "file": path.name, "size": path.stat().st_size, "sha256": digest,
              "first_seen": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}
    data = (json.dumps(record, indent=2, sort_keys=True) + "\n").encode("utf-8")
    if not _create_new(record_path, data):
        current = _trust_record(arch, tag, entry)
        if current is not None:  # another process recorded its first download meanwhile: that one counts
            if str(current["sha256"]).lower() != digest:
                raise HashMismatchError(f"sha256 mismatch for weights {arch}.{tag}: file {path}: expected "
                                        f"{current['sha256']}, got {digest}{_trust_note(arch, tag, current)}")
            return digest
        with atomic_path(record_path) as tmp:  # the record of an earlier source of this entry
            tmp.write_bytes(data)
    print(f"snn-det-zoo: {arch}.{tag}: the authors publish no sha256 for {path.name}; trusting the file of this "
          f"first download from now on: sha256 {digest} (recorded in {record_path}; every later load must "
          "match it)", file=sys.stderr)
    return digest


# ----------------------------------------------------------------------------------------------------------
# Network sources

_LOOPBACK_NAMES = {"localhost"}


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_url(url: str) -> None:
    try:
        parsed = urllib.parse.urlparse(url)
        host = parsed.hostname
    except ValueError as exc:  # e.g. an unclosed IPv6 bracket
        raise InvalidArgumentError(f"refusing to download {url!r}: not a valid URL ({exc})") from exc
    # Plain http only to this machine (local mirrors, tests); anything remote must be https.
    if parsed.scheme == "https" or (parsed.scheme == "http" and _is_loopback(host)):
        return
    raise InvalidArgumentError(f"refusing to download {url!r}: only https:// URLs (or http:// to localhost) "
                               "are allowed")


class _CheckedRedirects(urllib.request.HTTPRedirectHandler):
    """Follows a redirect only to a URL that :func:`_check_url` accepts, with the scheme of the request.

    Without this, urllib would follow https -> http (a downgrade anyone on the path can tamper with) and
    redirects to any http host. urllib's own limits (10 redirects, 4 visits of one URL) stay in force.
    """

    def redirect_request(self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any,
                         newurl: str) -> urllib.request.Request | None:
        old_scheme, new_scheme = urllib.parse.urlparse(req.full_url).scheme, urllib.parse.urlparse(newurl).scheme
        try:
            if new_scheme != old_scheme:
                raise InvalidArgumentError(f"it changes the scheme from {old_scheme} to {new_scheme}")
            _check_url(newurl)
        except InvalidArgumentError as exc:
            fp.close()  # the redirect response is not read further; free its connection
            raise DownloadError(f"refusing the HTTP {code} redirect from {req.full_url} to {newurl}: "
                                f"{exc}") from None
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _offline_error(what: str, cache: Path, note: str = "") -> OfflineError:
    removed = f" ({note})" if note else ""
    return OfflineError(f"{what} is not cached at {cache}{removed} and downloads are off (SNN_DET_ZOO_OFFLINE "
                        "or HF_HUB_OFFLINE is set); unset the switch, or put the file in place with "
                        "`snn-det-zoo import-weights NAME PATH`")


def _content_length(url: str, response: http.client.HTTPResponse) -> int | None:
    values = response.headers.get_all("Content-Length") or []
    if not values:
        return None
    try:
        (size,) = {int(v) for v in values}  # several headers must agree
    except ValueError:
        raise DownloadError(f"download of {url}: unusable Content-Length {values}") from None
    if size < 0:
        raise DownloadError(f"download of {url}: unusable Content-Length {values}")
    return size


def download_url(url: str, dest: str | os.PathLike[str], sha256: str | None, timeout: float = 60.0, *,
                 deadline_s: float = 3600.0) -> Path:
    """Download ``url`` to ``dest`` atomically, verifying the full ``sha256`` (when given) before the rename.

    An existing ``dest`` is reused when it has ``sha256`` (or when no hash is given); one with another hash
    is removed and downloaded again. ``timeout`` bounds each connect and read, ``deadline_s`` the whole
    transfer (checked between reads). Without ``sha256`` the response must carry a ``Content-Length``;
    either way the bytes received must match it.

    Raises:
        InvalidArgumentError: a URL other than https (or http to this machine), or a malformed sha256.
        OfflineError: the file is not cached and downloads are off.
        DownloadError: an HTTP or connection error, a refused redirect, the deadline, a transfer without
            Content-Length and sha256, or one whose size is not its Content-Length. Names the URL.
        HashMismatchError: the bytes have another sha256 (names the file and both hashes).
    """
    dest = Path(dest)
    _check_url(url)
    _check_sha256_argument(sha256)
    removed = _drop_if_corrupt(dest, sha256)
    if dest.is_file():
        return dest
    if is_offline():
        raise _offline_error(url, dest, removed)
    start = time.monotonic()
    # A fresh opener per download: the redirect policy must not leak into (or come from) a global opener.
    opener = urllib.request.build_opener(_CheckedRedirects())
    request = urllib.request.Request(url, headers={"User-Agent": "snn-det-zoo"})
    with atomic_path(dest, suffix=".part") as tmp:
        digest, size = hashlib.sha256(), 0
        try:
            with opener.open(request, timeout=min(timeout, deadline_s)) as response, open(tmp, "wb") as out:
                expected_size = _content_length(url, response)
                if expected_size is None and sha256 is None:
                    raise DownloadError(f"download of {url}: the response has no Content-Length and the "
                                        "weights entry no sha256, so nothing can show the file is complete; "
                                        "refusing it")
                # read1 returns what one recv gives, so a server that trickles bytes cannot hold a read
                # (and the deadline check) for longer than `timeout`.
                while chunk := response.read1(_CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
                    if expected_size is not None and size > expected_size:
                        raise DownloadError(f"download of {url} delivers more than its Content-Length of "
                                            f"{expected_size} bytes")
                    if time.monotonic() - start > deadline_s:
                        raise DownloadError(f"download of {url} did not finish within its deadline of "
                                            f"{deadline_s:g} s ({size} bytes received)")
        except ZooError:
            raise
        except urllib.error.HTTPError as exc:
            exc.close()
            reason = " ".join(str(exc.reason).split())  # urllib's redirect-loop reason spans lines
            raise DownloadError(f"download of {url} failed: HTTP {exc.code} {reason}") from exc
        except urllib.error.URLError as exc:
            raise DownloadError(f"download of {url} failed: {exc.reason}") from exc
        except (OSError, http.client.HTTPException) as exc:  # timeouts, resets, broken chunked framing
            raise DownloadError(f"download of {url} failed: {type(exc).__name__}: {exc}") from exc
        if expected_size is not None and size != expected_size:
            raise DownloadError(f"download of {url} is truncated: {size} of {expected_size} bytes")
        actual = digest.hexdigest()
        if sha256 is not None and actual != sha256.lower():
            raise HashMismatchError(f"sha256 mismatch for {dest.name} downloaded from {url}: "
                                    f"expected {sha256}, got {actual}")
    return dest


def _fetch_hf_hub(spec: str, sha256: str | None) -> Path:
    """``org/repo[@rev]/path/in/repo`` through huggingface_hub's own cache (it honours HF_HUB_OFFLINE)."""
    parts = spec.split("/")
    if len(parts) < 3 or not all(parts):
        raise InvalidArgumentError(f"hf-hub source {spec!r} must look like 'hf-hub:org/repo[@revision]/file'")
    repo_id, _, revision = f"{parts[0]}/{parts[1]}".partition("@")
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as exc:
        raise MissingDependencyError("weights on the Hugging Face Hub need huggingface_hub: "
                                     "pip install huggingface_hub") from exc
    try:
        path = Path(hf_hub_download(repo_id, "/".join(parts[2:]), revision=revision or None,
                                    library_name="snn_det_zoo", local_files_only=is_offline()))
    except Exception as exc:  # its error types differ between releases (requests-, httpx-based, OSError...)
        if is_offline():
            raise OfflineError(f"hf-hub:{spec} is not in huggingface_hub's cache and downloads are off "
                               "(SNN_DET_ZOO_OFFLINE or HF_HUB_OFFLINE is set); unset the switch, or put the "
                               "file in place with `snn-det-zoo import-weights NAME PATH`") from exc
        raise DownloadError(f"download of hf-hub:{spec} failed: {type(exc).__name__}: {exc}") from exc
    verify_sha256(path, sha256, "file")
    return path


def _fetch_gdrive(file_id: str, dest: Path, sha256: str | None) -> Path:
    removed = _drop_if_corrupt(dest, sha256)
    if dest.is_file():
        return dest
    if is_offline():
        raise _offline_error(f"Google Drive file {file_id}", dest, removed)
    try:
        import gdown
    except ImportError as exc:
        raise MissingDependencyError("weights on Google Drive need gdown: pip install gdown (or download the "
                                     "file by hand and run `snn-det-zoo import-weights NAME PATH`)") from exc
    with atomic_path(dest, suffix=".part") as tmp:
        try:
            got = gdown.download(id=file_id, output=str(tmp), quiet=False)
        except Exception as exc:  # gdown raises its own, requests' and urllib3's error types
            raise DownloadError(f"gdown could not download Google Drive file {file_id}: "
                                f"{type(exc).__name__}: {exc}") from exc
        if got is None:
            raise DownloadError(f"gdown could not download Google Drive file {file_id}")
        verify_sha256(tmp, sha256, f"Google Drive file {file_id} downloaded as")
    return dest


# gdown >= 6 reads Drive's current folder page (embeddedfolderview); 6.3 added the timeouts passed below.
_GDOWN_MIN = (6, 3)
_GDRIVE_TIMEOUT = 60.0  # seconds without a byte from Google Drive before gdown gives up


def _import_gdown(what: str, by_hand: str) -> Any:
    need = f"{what} need gdown {'.'.join(map(str, _GDOWN_MIN))} or newer"
    try:
        import gdown
    except ImportError as exc:
        raise MissingDependencyError(f"{need}: pip install gdown (or pip install 'snn-det-zoo[gdrive]'); "
                                     f"{by_hand}") from exc
    found = re.match(r"(\d+)\.(\d+)", str(getattr(gdown, "__version__", "")))
    if found and (int(found[1]), int(found[2])) < _GDOWN_MIN:
        raise MissingDependencyError(f"{need}, found {gdown.__version__}: pip install -U gdown; {by_hand}")
    return gdown


def _fetch_gdrive_folder(arch: str, tag: str, entry: Mapping[str, Any], dest: Path, sha256: str | None) -> Path:
    """The entry's ``folder_file`` from the Google Drive folder of its source, downloaded with gdown to ``dest``."""
    folder_id, name = str(entry["source"])[len("gdrive-folder:"):], str(entry["folder_file"])
    link = f"https://drive.google.com/drive/folders/{folder_id}"
    by_hand = f"or download {name} from {link} by hand and run `snn-det-zoo import-weights {arch}.{tag} PATH`"
    removed = _drop_if_corrupt(dest, sha256)
    if dest.is_file():
        return dest
    if is_offline():
        note = f" ({removed})" if removed else ""
        raise OfflineError(f"{name} of the Google Drive folder {link} ({arch}.{tag}) is not cached at {dest}{note} "
                           "and downloads are off (SNN_DET_ZOO_OFFLINE or HF_HUB_OFFLINE is set); unset the "
                           f"switch, {by_hand}")
    gdown = _import_gdown(f"weights in Google Drive folders ({arch}.{tag})", by_hand)
    try:
        # skip_download: only the listing; the cookie jar in the user's home is neither read nor written.
        listing = gdown.download_folder(id=folder_id, skip_download=True, quiet=True, use_cookies=False,
                                        timeout=_GDRIVE_TIMEOUT)
    except Exception as exc:  # gdown's own, requests' and urllib3's error types
        raise DownloadError(f"gdown could not list the Google Drive folder {link} of {arch}.{tag}: "
                            f"{type(exc).__name__}: {exc}; {by_hand}") from exc
    if listing is None:
        raise DownloadError(f"gdown could not list the Google Drive folder {link} of {arch}.{tag}; {by_hand}")
    files = [(str(item.path).replace(os.sep, "/"), str(item.id)) for item in listing]
    ids = [file_id for path, file_id in files if path == name]
    if not ids:
        held = ", ".join(sorted(path for path, _ in files)) or "no files"
        raise WeightsNotFoundError(f"the Google Drive folder {link} of {arch}.{tag} has no file {name!r} (its "
                                   f"weights entry's folder_file); the folder holds: {held}")
    if len(ids) > 1:
        raise WeightsNotFoundError(f"the Google Drive folder {link} of {arch}.{tag} holds {len(ids)} files named "
                                   f"{name!r} (ids {', '.join(ids)}), so which one is meant is unclear; {by_hand}")
    with atomic_path(dest, suffix=".part") as tmp:
        try:
            got = gdown.download(id=ids[0], output=str(tmp), quiet=False, use_cookies=False,
                                 timeout=_GDRIVE_TIMEOUT)
        except Exception as exc:
            raise DownloadError(f"gdown could not download {name} (id {ids[0]}) of the Google Drive folder {link}: "
                                f"{type(exc).__name__}: {exc}; {by_hand}") from exc
        finally:  # gdown keeps a failed transfer for resuming, beside tmp; nothing resumes it here
            for partial in tmp.parent.glob(glob.escape(tmp.name) + "*.part"):
                partial.unlink(missing_ok=True)
        if got is None:
            raise DownloadError(f"gdown could not download {name} (id {ids[0]}) of the Google Drive folder {link}; "
                                f"{by_hand}")
        actual = sha256_file(tmp)
        if sha256 is not None and actual != sha256.lower():
            raise HashMismatchError(f"sha256 mismatch for {name} downloaded from the Google Drive folder {link}: "
                                    f"expected {sha256}, got {actual}")
    return dest


# ----------------------------------------------------------------------------------------------------------
# State dicts

_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def clean_state_dict(state_dict: Mapping[str, torch.Tensor]) -> OrderedDict[str, torch.Tensor]:
    """Strip the prefixes DDP (``module.``) and ``torch.compile`` (``_orig_mod.``) add to every key."""
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    for key, value in state_dict.items():
        while key.startswith(_WRAPPER_PREFIXES):
            key = key.split(".", 1)[1]
        if key in out:
            raise CheckpointFormatError(f"state dict key {key!r} appears twice once wrapper prefixes are "
                                        "stripped")
        out[key] = value
    return out


def _is_safetensors(path: Path) -> bool:
    if path.suffix == ".safetensors":
        return True
    with open(path, "rb") as fh:  # 8-byte little-endian header length, then a JSON object
        head = fh.read(9)
    return len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < (1 << 27)


def _read_safetensors(path: Path, data: bytes | None = None) -> OrderedDict[str, torch.Tensor]:
    """The state dict of the safetensors ``path`` (parsed from ``data`` when its bytes are already read)."""
    from safetensors import SafetensorError
    from safetensors.torch import load, load_file

    try:
        tensors = load_file(str(path), device="cpu") if data is None else load(data)
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointFormatError(f"{path}: not a readable safetensors file ({exc})") from exc
    return clean_state_dict(tensors)


def load_state_dict_file(path: str | os.PathLike[str]) -> OrderedDict[str, torch.Tensor]:
    """Read a state dict: safetensors first, else ``torch.load(weights_only=True)`` for plain state dicts.

    Wrapper prefixes are stripped. Pickled model objects (the authors' checkpoints) are refused with a
    pointer to ``snn-det-zoo import-weights``.

    Raises:
        WeightsNotFoundError: no such file.
        CheckpointFormatError: not a readable safetensors file or plain state dict (names the file).
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsNotFoundError(f"weights file not found: {path}")
    if _is_safetensors(path):
        return _read_safetensors(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError or EOFError for bad files
        raise CheckpointFormatError(f"{path}: not a plain state dict that torch.load(weights_only=True) "
                                    f"accepts ({exc}); an authors' pickled checkpoint is converted with "
                                    "`snn-det-zoo import-weights NAME PATH`") from exc
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointFormatError(f"{path}: expected a mapping of parameter names to tensors, got "
                                    f"{type(obj).__name__}")
    return clean_state_dict(obj)


# ----------------------------------------------------------------------------------------------------------
# The weights cache


def _read_card(card: Path) -> dict[str, Any] | None:
    return read_cache_record(card, f"delete {card.parent} and import again")


def _current_card(folder: Path) -> dict[str, Any] | None:
    """The card in ``folder`` now (``None`` also when unreadable): to notice a concurrent save_weights."""
    try:
        return _read_card(folder / "card.json")
    except CheckpointFormatError:
        return None


def read_cached_card(arch: str, tag: str) -> dict[str, Any] | None:
    """The ``card.json`` of cached weights ``arch.tag``, or ``None`` when they are not cached.

    Raises:
        CheckpointFormatError: the card is not a JSON object (names the file).
    """
    return _read_card(weights_dir(arch, tag) / "card.json")


def _remove_stale(folder: Path, keep: str) -> None:
    # Keep also what the card names now, in case another save of this entry replaced it meanwhile.
    keep_names = {keep, cache_card_file(_current_card(folder))}
    for old in folder.glob("model*.safetensors"):
        if old.name not in keep_names and WEIGHTS_FILE.fullmatch(old.name):
            old.unlink(missing_ok=True)


def save_weights(
    arch: str, tag: str, state_dict: Mapping[str, torch.Tensor], record: Mapping[str, Any]
) -> Path:
    """Store ``state_dict`` as the cached weights ``arch.tag``; returns the safetensors file.

    ``record`` is stored in ``card.json`` together with the name and sha256 of the safetensors file. The
    file is written under its content name first, ``card.json`` replaced atomically next, and the files of
    the previous entry removed last, so the old entry stays usable until the new one is complete.
    """
    from safetensors.torch import save

    folder = weights_dir(arch, tag)
    tensors = {k: v.detach().contiguous().clone() for k, v in state_dict.items()}
    # Serialised in memory so that the name (from the hash) is known before anything is written.
    data = save(tensors, metadata={"arch": arch, "tag": tag, "format": "snn_det_zoo"})
    del tensors
    digest = hashlib.sha256(data).hexdigest()
    path = folder / f"model-{digest[:16]}.safetensors"
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    card = {"name": f"{arch}.{tag}", "arch": arch, "tag": tag, **record, "file": path.name, "sha256": digest,
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}
    with atomic_path(folder / "card.json") as tmp:
        tmp.write_text(json.dumps(card, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
    _remove_stale(folder, keep=path.name)
    return path


class CorruptCacheEntry(Exception):
    """A cache entry failed its check and was removed; the message says what was removed. The caller fetches
    the weights again (it is not a ZooError: it never reaches a user)."""


def _removed_entry(folder: Path, card: Mapping[str, Any] | None, path: Path | None,
                   problem: str) -> CorruptCacheEntry:
    """Remove a corrupt entry, its card first so that nothing vouches for the file; the error to raise."""
    if card is None or _current_card(folder) == card:  # not a card a concurrent save has just written
        (folder / "card.json").unlink(missing_ok=True)
    if path is not None:
        path.unlink(missing_ok=True)
    note = f"the cached weights {folder.parent.name}.{folder.name} at {path or folder} {problem}; removed them"
    warnings.warn(f"{note}, fetching them again", stacklevel=4)
    return CorruptCacheEntry(note)


def cached_weights(
    arch: str, tag: str, entry: Mapping[str, Any]
) -> tuple[OrderedDict[str, torch.Tensor], Path] | None:
    """The cached state dict of ``arch.tag`` and its file, verified against the card; ``None`` if not cached.

    The bytes are read once, then hashed and parsed, so what is loaded is what was verified. A corrupt entry
    (unreadable card, missing file, bytes unlike the card's hash) is removed and :class:`CorruptCacheEntry`
    raised, so that the caller fetches the weights again.
    """
    folder = weights_dir(arch, tag)
    for _ in range(3):  # a concurrent save_weights may remove the file of the card just read: read again
        try:
            card = read_cached_card(arch, tag)
        except CheckpointFormatError as exc:
            raise _removed_entry(folder, None, None, f"have an unreadable card.json ({exc})") from None
        if card is None:
            return None
        if card.get("kind") == USER_KIND:  # imported before the card had this tag; never taken for the card's
            source = card.get("source") or "PATH"
            raise WeightsNotFoundError(f"{folder} holds your own weights imported as {arch}.{tag} (from {source}), "
                                       f"but the model card now has weights {arch}.{tag} of its own; import yours "
                                       f"again under another tag (snn-det-zoo import-weights {arch}.<your tag> "
                                       f"{shlex.quote(str(source))}), then delete {folder}")
        name, digest = cache_card_file(card), card.get("sha256")
        if name is None or not isinstance(digest, str) or not _SHA256.fullmatch(digest):
            raise _removed_entry(folder, card, None, f"have a card.json without a valid file and sha256 ({card})")
        path = folder / name
        expected = entry.get("sha256")
        # The card pins the bytes of the file the weights were made from; a card without source_sha256 (a
        # hand-made record) only those of the cached file.
        recorded = card.get("source_sha256") or digest
        if expected is not None and recorded != expected:
            raise HashMismatchError(f"cached weights {path} come from a file with sha256 {recorded}, but the "
                                    f"model card expects {expected}; delete {folder} and fetch or import "
                                    "again")
        if card.get("card_source") not in (None, str(entry["source"])):  # the card has moved to another release
            raise _removed_entry(folder, card, None, f"were made from {card['card_source']}, but the model card "
                                 f"now names {entry['source']}")
        trusted = _trust_record(arch, tag, entry)
        if trusted is not None and recorded != str(trusted["sha256"]).lower():
            raise HashMismatchError(f"cached weights {path} come from a file with sha256 {recorded}, but "
                                    f"expected {trusted['sha256']}{_trust_note(arch, tag, trusted)}; to fetch "
                                    f"them again instead, delete {folder}")
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            if _current_card(folder) != card:
                continue
            raise _removed_entry(folder, card, None, f"lack the file {name} that their card.json names") from None
        actual = hashlib.sha256(data).hexdigest()
        if actual != digest.lower():
            raise _removed_entry(folder, card, path, f"have sha256 {actual}, but their card.json says {digest}")
        return _read_safetensors(path, data), path
    raise WeightsNotFoundError(f"the cache entry {folder} kept changing while it was read; try again")


def cached_user_weights(arch: str, tag: str) -> tuple[OrderedDict[str, torch.Tensor], Path]:
    """The state dict the user imported as ``arch.tag`` (a tag the card does not have) and its file, verified.

    Nothing can fetch these again, so a corrupt entry is left in place and the error says to import again.

    Raises:
        WeightsNotFoundError: no such entry, or its file is gone.
        HashMismatchError: the file's bytes are not those its ``card.json`` states.
        CheckpointFormatError: an unreadable ``card.json`` or safetensors file.
    """
    folder = weights_dir(arch, tag)
    for _ in range(3):  # a concurrent import may replace the file of the card just read: read again
        card = user_weights_card(arch, tag)
        if card is None:
            raise WeightsNotFoundError(f"no weights {arch}.{tag} of yours in the cache ({folder}); import them: "
                                       f"snn-det-zoo import-weights {arch}.{tag} PATH")
        again = (f"import them again: snn-det-zoo import-weights {arch}.{tag} "
                 f"{shlex.quote(str(card['source'])) if card.get('source') else 'PATH'}")
        name, digest = cache_card_file(card), card.get("sha256")
        if name is None or not isinstance(digest, str) or not _SHA256.fullmatch(digest):
            raise CheckpointFormatError(f"{folder / 'card.json'}: corrupt record of your weights {arch}.{tag} (no "
                                        f"valid file and sha256); {again}")
        path = folder / name
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            if _current_card(folder) != card:
                continue
            raise WeightsNotFoundError(f"your weights {arch}.{tag}: the file {path} their card.json names is "
                                       f"missing; {again}") from None
        actual = hashlib.sha256(data).hexdigest()
        if actual != digest.lower():
            raise HashMismatchError(f"your weights {arch}.{tag} are corrupt: {path} has sha256 {actual}, but their "
                                    f"card.json says {digest}; {again}")
        try:
            return _read_safetensors(path, data), path
        except CheckpointFormatError as exc:
            raise CheckpointFormatError(f"{exc}; {again}") from exc
    raise WeightsNotFoundError(f"the cache entry {folder} kept changing while it was read; try again")


def _manual_instructions(arch: str, tag: str, entry: Mapping[str, Any]) -> str:
    source = str(entry["source"])
    kind, _, ident = source.partition(":")
    link = {"gdrive": f"https://drive.google.com/file/d/{ident}",
            "gdrive-folder": f"https://drive.google.com/drive/folders/{ident}"}.get(kind, source)
    how = f" ({entry['how_to_get']})" if entry.get("how_to_get") else ""
    return (f"the weights {arch}.{tag} are not in the cache ({weights_dir(arch, tag)}). They are the "
            f"authors' release at {link}{how}. Download the file by hand, then run: "
            f"snn-det-zoo import-weights {arch}.{tag} /path/to/the/file")


def _local_source(arch: str, tag: str, entry: Mapping[str, Any]) -> Path:
    source, sha = str(entry["source"]), entry.get("sha256")
    if source.startswith("file:"):
        path = Path(source[len("file:"):]).expanduser()
        if not path.is_file():
            raise WeightsNotFoundError(f"weights file {path} of {arch}.{tag} not found")
        verify_sha256(path, sha, "weights file")
        return path
    if source.startswith("package:"):  # shipped with the zoo: verified in place, never copied
        path = catalog_file(source[len("package:"):])
        if not path.is_file():
            raise WeightsNotFoundError(f"the weights file {path} of {arch}.{tag} that ships with the zoo is "
                                       "missing; reinstall snn-det-zoo")
        verify_sha256(path, sha, "shipped weights file")
        return path
    raise InvalidArgumentError(f"weights {arch}.{tag}: unsupported source {source!r}")


def download_dir(arch: str, tag: str, entry: Mapping[str, Any]) -> Path:
    """Where the entry's downloaded file is kept: one folder per source (and file of a folder), so that a card
    that moves to another release never takes the old download for the new one."""
    key = hashlib.sha256(f"{entry['source']}\n{entry.get('folder_file') or ''}".encode()).hexdigest()[:16]
    return zoo_home() / "downloads" / arch / tag / key


def _download_source(arch: str, tag: str, entry: Mapping[str, Any], sha: str | None) -> Path:
    source = str(entry["source"])
    downloads = download_dir(arch, tag, entry)
    if source.startswith(("https://", "http://")):  # download_url allows http only to localhost
        name = Path(urllib.parse.urlparse(source).path).name or "weights"
        return download_url(source, downloads / name, sha)
    if source.startswith("hf-hub:"):
        return _fetch_hf_hub(source[len("hf-hub:"):], sha)
    if source.startswith("gdrive:"):
        try:
            return _fetch_gdrive(source[len("gdrive:"):], downloads / "checkpoint.pt", sha)
        except (MissingDependencyError, OfflineError, DownloadError) as exc:
            raise WeightsNotFoundError(f"{_manual_instructions(arch, tag, entry)} [{exc}]") from exc
    # gdrive-folder: which file of the folder to take is the card's folder_file, else a human decision
    if not entry.get("folder_file"):
        raise WeightsNotFoundError(_manual_instructions(arch, tag, entry))
    return _fetch_gdrive_folder(arch, tag, entry, downloads / Path(str(entry["folder_file"])).name, sha)


def fetch_source(arch: str, tag: str, entry: Mapping[str, Any]) -> Path:
    """A local, verified copy of the entry's source file (downloading when needed and allowed).

    A downloaded file is checked against the entry's sha256; where the entry states none, against the sha256
    recorded on the first download (trust on first use), which the first download records and prints.
    """
    source = str(entry["source"])
    if not source.startswith(_NETWORK_SOURCES):
        return _local_source(arch, tag, entry)
    trusted = _trust_record(arch, tag, entry)
    sha = entry.get("sha256") or (str(trusted["sha256"]).lower() if trusted is not None else None)
    try:
        path = _download_source(arch, tag, entry, sha)
    except HashMismatchError as exc:
        if trusted is None:
            raise
        raise HashMismatchError(f"{exc}{_trust_note(arch, tag, trusted)}") from exc
    if sha is None:
        _record_first_use(arch, tag, entry, path)
    return path
