"""Weights by name: sources, full-sha256 checks, the local cache, safetensors, offline use.

Shaped after timm's ``_hub.py``/``_helpers.py``. A weights entry of a model card names a ``source``
(``https://...``, ``hf-hub:org/repo[@rev]/file``, ``gdrive:<id>``, ``gdrive-folder:<id>``, ``file:<path>``),
a full ``sha256`` (``null`` only for authors' releases no maintainer has seen) and a ``format``
(``safetensors``, or an authors' pickle that :mod:`snn_det_zoo.port` converts).

Cache layout under ``$SNN_DET_ZOO_HOME`` (default ``~/.cache/snn_det_zoo``)::

    weights/<arch>/<tag>/model.safetensors   the state dict, FP32, exactly the model's keys
    weights/<arch>/<tag>/card.json           sha256 of the safetensors and of its source; source, variant
    downloads/<arch>/<tag>/<file>            verified downloads of sources that need converting

``card.json`` is written last, so a directory without it is an unfinished import and is ignored. Every
network access goes through :func:`download_url`, :func:`_fetch_hf_hub` or :func:`_fetch_gdrive`, which
obey ``SNN_DET_ZOO_OFFLINE=1`` and ``HF_HUB_OFFLINE=1``. Files are written to a temporary name, verified,
then moved into place with ``os.replace``; cached files are verified again before use.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import json
import os
import urllib.parse
import urllib.request
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ._atomic import atomic_path

__all__ = [
    "HashMismatchError",
    "OfflineError",
    "WeightsNotFoundError",
    "clean_state_dict",
    "download_url",
    "is_offline",
    "load_pretrained",
    "load_state_dict_file",
    "load_state_dict_strict",
    "read_cached_card",
    "save_weights",
    "sha256_file",
    "verify_sha256",
    "weights_dir",
    "zoo_home",
]

_TRUE = {"1", "true", "yes", "on"}
_PICKLE_FORMATS = ("ultralytics-pickle", "yolov5-pickle")
_CHUNK = 1 << 20


class HashMismatchError(ValueError):
    """A file's sha256 is not the one its weights entry (or cache record) states."""


class OfflineError(RuntimeError):
    """A download is needed but the offline switch is on."""


class WeightsNotFoundError(FileNotFoundError):
    """The weights are neither cached nor downloadable here; the message says how to get them."""


# ----------------------------------------------------------------------------------------------------------
# Paths, switches, hashes


def zoo_home() -> Path:
    """The cache root: ``$SNN_DET_ZOO_HOME``, else ``~/.cache/snn_det_zoo``."""
    return Path(os.environ.get("SNN_DET_ZOO_HOME") or Path.home() / ".cache" / "snn_det_zoo").expanduser()


def weights_dir(arch: str, tag: str) -> Path:
    """Where the weights ``arch.tag`` live once imported or downloaded."""
    for part, what in ((arch, "arch"), (tag, "tag")):
        if not part or "/" in part or "\\" in part or part in (".", ".."):
            raise ValueError(f"invalid {what} {part!r} for a weights cache path")
    return zoo_home() / "weights" / arch / tag


def is_offline() -> bool:
    """Whether ``SNN_DET_ZOO_OFFLINE`` or ``HF_HUB_OFFLINE`` forbids network access."""
    switches = ("SNN_DET_ZOO_OFFLINE", "HF_HUB_OFFLINE")
    return any(os.environ.get(name, "").strip().lower() in _TRUE for name in switches)


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Full hex sha256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify_sha256(path: Path, expected: str | None, what: str) -> str:
    """The sha256 of ``path``; HashMismatchError (naming ``what``, file, both hashes) if not ``expected``."""
    actual = sha256_file(path)
    if expected is not None and actual != expected.lower():
        raise HashMismatchError(f"sha256 mismatch for {what} {path}: expected {expected}, got {actual}")
    return actual


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
    parsed = urllib.parse.urlparse(url)
    # Plain http only to this machine (local mirrors, tests); anything remote must be https.
    if parsed.scheme == "https" or (parsed.scheme == "http" and _is_loopback(parsed.hostname)):
        return
    raise ValueError(f"refusing to download {url!r}: only https:// URLs (or http:// to localhost) are "
                     "allowed")


def _offline_error(what: str, cache: Path) -> OfflineError:
    return OfflineError(f"{what} is not cached at {cache} and downloads are off (SNN_DET_ZOO_OFFLINE or "
                        "HF_HUB_OFFLINE is set); unset the switch, or put the file in place with "
                        "`snn-det-zoo import-weights NAME PATH`")


def download_url(url: str, dest: str | os.PathLike[str], sha256: str | None, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest`` atomically, verifying the full ``sha256`` (when given) before the rename.

    An existing ``dest`` is verified and reused. Raises :class:`HashMismatchError` naming the file and both
    hashes, :class:`OfflineError` when downloads are off, ``ValueError`` for a non-https URL.
    """
    dest = Path(dest)
    _check_url(url)
    if dest.is_file():
        verify_sha256(dest, sha256, "cached file")
        return dest
    if is_offline():
        raise _offline_error(url, dest)
    with atomic_path(dest, suffix=".part") as tmp:
        digest, size = hashlib.sha256(), 0
        request = urllib.request.Request(url, headers={"User-Agent": "snn-det-zoo"})
        with urllib.request.urlopen(request, timeout=timeout) as response, open(tmp, "wb") as out:
            expected_size = response.headers.get("Content-Length")
            while chunk := response.read(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
                size += len(chunk)
        if expected_size is not None and int(expected_size) != size:
            raise OSError(f"download of {url} is truncated: {size} of {expected_size} bytes")
        actual = digest.hexdigest()
        if sha256 is not None and actual != sha256.lower():
            raise HashMismatchError(f"sha256 mismatch for {dest.name} downloaded from {url}: "
                                    f"expected {sha256}, got {actual}")
    return dest


def _fetch_hf_hub(spec: str, sha256: str | None) -> Path:
    """``org/repo[@rev]/path/in/repo`` through huggingface_hub's own cache (it honours HF_HUB_OFFLINE)."""
    parts = spec.split("/")
    if len(parts) < 3 or not all(parts):
        raise ValueError(f"hf-hub source {spec!r} must look like 'hf-hub:org/repo[@revision]/file'")
    repo_id, _, revision = f"{parts[0]}/{parts[1]}".partition("@")
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as exc:
        raise ImportError("weights on the Hugging Face Hub need huggingface_hub: "
                          "pip install huggingface_hub") from exc
    path = hf_hub_download(repo_id, "/".join(parts[2:]), revision=revision or None,
                           library_name="snn_det_zoo", local_files_only=is_offline())
    path = Path(path)
    verify_sha256(path, sha256, "file")
    return path


def _fetch_gdrive(file_id: str, dest: Path, sha256: str | None) -> Path:
    if dest.is_file():
        verify_sha256(dest, sha256, "cached file")
        return dest
    if is_offline():
        raise _offline_error(f"Google Drive file {file_id}", dest)
    try:
        import gdown
    except ImportError as exc:
        raise ImportError("weights on Google Drive need gdown: pip install gdown (or download the file by "
                          "hand and run `snn-det-zoo import-weights NAME PATH`)") from exc
    with atomic_path(dest, suffix=".part") as tmp:
        if gdown.download(id=file_id, output=str(tmp), quiet=False) is None:
            raise OSError(f"gdown could not download Google Drive file {file_id}")
        verify_sha256(tmp, sha256, f"Google Drive file {file_id} downloaded as")
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
            raise ValueError(f"state dict key {key!r} appears twice once wrapper prefixes are stripped")
        out[key] = value
    return out


def _is_safetensors(path: Path) -> bool:
    if path.suffix == ".safetensors":
        return True
    with open(path, "rb") as fh:  # 8-byte little-endian header length, then a JSON object
        head = fh.read(9)
    return len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < (1 << 27)


def load_state_dict_file(path: str | os.PathLike[str]) -> OrderedDict[str, torch.Tensor]:
    """Read a state dict: safetensors first, else ``torch.load(weights_only=True)`` for plain state dicts.

    Wrapper prefixes are stripped. Pickled model objects (the authors' checkpoints) are refused with a
    pointer to ``snn-det-zoo import-weights``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    if _is_safetensors(path):
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return clean_state_dict(load_file(str(path), device="cpu"))
        except (SafetensorError, OSError, ValueError) as exc:
            raise ValueError(f"{path}: not a readable safetensors file ({exc})") from exc
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError or EOFError for bad files
        raise ValueError(f"{path}: not a plain state dict that torch.load(weights_only=True) accepts "
                         f"({exc}); an authors' pickled checkpoint is converted with "
                         "`snn-det-zoo import-weights NAME PATH`") from exc
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{path}: expected a mapping of parameter names to tensors, got "
                         f"{type(obj).__name__}")
    return clean_state_dict(obj)


def load_state_dict_strict(model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """``model.load_state_dict(strict=True)``, with one error listing missing, unexpected, misshapen keys."""
    from .port.keymap import map_state_dict

    target = model.state_dict()
    shapes = {k: v.shape for k, v in target.items()}
    ordered = map_state_dict(state_dict, shapes, what=f"weights file {source}")
    model.load_state_dict(ordered, strict=True)


# ----------------------------------------------------------------------------------------------------------
# The weights cache


def read_cached_card(arch: str, tag: str) -> dict[str, Any] | None:
    """The ``card.json`` of cached weights ``arch.tag``, or ``None`` when they are not cached."""
    card = weights_dir(arch, tag) / "card.json"
    if not card.is_file():
        return None
    try:
        return json.loads(card.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{card}: corrupt cache record ({exc}); delete {card.parent} and import "
                         "again") from exc


def save_weights(
    arch: str, tag: str, state_dict: Mapping[str, torch.Tensor], record: Mapping[str, Any]
) -> Path:
    """Write ``model.safetensors`` and then ``card.json`` for ``arch.tag`` into the cache, atomically.

    ``record`` is stored in ``card.json`` together with the sha256 of the written safetensors file.
    """
    from safetensors.torch import save_file

    folder = weights_dir(arch, tag)
    (folder / "card.json").unlink(missing_ok=True)  # the old record must not vouch for the new file
    tensors = {k: v.detach().contiguous().clone() for k, v in state_dict.items()}
    with atomic_path(folder / "model.safetensors") as tmp:
        save_file(tensors, str(tmp), metadata={"arch": arch, "tag": tag, "format": "snn_det_zoo"})
        digest = sha256_file(tmp)
    card = {"name": f"{arch}.{tag}", "arch": arch, "tag": tag, **record, "sha256": digest,
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}
    with atomic_path(folder / "card.json") as tmp:
        tmp.write_text(json.dumps(card, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
    return folder / "model.safetensors"


def _cached_weights(arch: str, tag: str, entry: Mapping[str, Any]) -> Path | None:
    """The verified cached safetensors of ``arch.tag``, or ``None`` when nothing is cached."""
    card = read_cached_card(arch, tag)
    if card is None:
        return None
    path = weights_dir(arch, tag) / "model.safetensors"
    if not path.is_file():
        raise WeightsNotFoundError(f"{path} is missing although {path.parent / 'card.json'} exists; delete "
                                   f"{path.parent} and fetch or import the weights again")
    verify_sha256(path, card.get("sha256"), "cached weights")
    expected = entry.get("sha256")
    # The card's hash pins the bytes: of the safetensors itself, or of the authors' file it was made from.
    recorded = card.get("sha256") if entry.get("format") == "safetensors" else card.get("source_sha256")
    if expected is not None and recorded != expected:
        raise HashMismatchError(f"cached weights {path} come from a file with sha256 {recorded}, but the "
                                f"model card expects {expected}; delete {path.parent} and fetch or import "
                                "again")
    return path


def _manual_instructions(arch: str, tag: str, entry: Mapping[str, Any]) -> str:
    source = str(entry["source"])
    kind, _, ident = source.partition(":")
    link = {"gdrive": f"https://drive.google.com/file/d/{ident}",
            "gdrive-folder": f"https://drive.google.com/drive/folders/{ident}"}.get(kind, source)
    how = f" ({entry['how_to_get']})" if entry.get("how_to_get") else ""
    return (f"the weights {arch}.{tag} are not in the cache ({weights_dir(arch, tag)}). They are the "
            f"authors' release at {link}{how}. Download the file by hand, then run: "
            f"snn-det-zoo import-weights {arch}.{tag} /path/to/the/file")


def _fetch_source(arch: str, tag: str, entry: Mapping[str, Any]) -> Path:
    """A local, verified copy of the entry's source file (downloading when needed and allowed)."""
    source, sha = str(entry["source"]), entry.get("sha256")
    downloads = zoo_home() / "downloads" / arch / tag
    if source.startswith("file:"):
        path = Path(source[len("file:"):]).expanduser()
        if not path.is_file():
            raise WeightsNotFoundError(f"weights file {path} of {arch}.{tag} not found")
        verify_sha256(path, sha, "weights file")
        return path
    if source.startswith(("https://", "http://")):  # download_url allows http only to localhost
        name = Path(urllib.parse.urlparse(source).path).name or "weights"
        return download_url(source, downloads / name, sha)
    if source.startswith("hf-hub:"):
        return _fetch_hf_hub(source[len("hf-hub:"):], sha)
    if source.startswith("gdrive:"):
        try:
            return _fetch_gdrive(source[len("gdrive:"):], downloads / "checkpoint.pt", sha)
        except (ImportError, OfflineError, OSError) as exc:
            raise WeightsNotFoundError(f"{_manual_instructions(arch, tag, entry)} [{exc}]") from exc
    if source.startswith("gdrive-folder:"):  # which file of the folder to take is a human decision
        raise WeightsNotFoundError(_manual_instructions(arch, tag, entry))
    raise ValueError(f"weights {arch}.{tag}: unsupported source {source!r}")


def load_pretrained(model: nn.Module, arch: str, tag: str, entry: Mapping[str, Any]) -> nn.Module:
    """Load the weights ``arch.tag`` described by the card ``entry`` into ``model``, strictly.

    Order: the verified cache (imported or previously fetched weights); else the source: a safetensors file
    is verified and loaded as is; an authors' pickle is verified, converted by :mod:`snn_det_zoo.port`,
    cached as safetensors and loaded. Missing or unexpected keys raise an error that lists them.
    """
    path = _cached_weights(arch, tag, entry)
    if path is None:
        source = _fetch_source(arch, tag, entry)
        if entry.get("format") == "safetensors":
            path = source
        else:
            from .port.importer import convert_file  # port/ is only needed for authors' checkpoints

            state_dict, record = convert_file(arch, tag, source, entry)
            path = save_weights(arch, tag, state_dict, record)
    load_state_dict_strict(model, load_state_dict_file(path), str(path))
    return model
