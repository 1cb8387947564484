"""The zoo's error types: one base, :class:`ZooError`, and one child per kind of failure.

Each child also derives from the builtin exception it refines (``UnknownModelError`` is a ``ValueError``,
``WeightsNotFoundError`` a ``FileNotFoundError``), so code written against the builtins keeps working, while
``except ZooError`` catches exactly what the zoo raises on purpose. The command line prints a ``ZooError`` as
one line and anything else, a bug, with its traceback.

This module imports nothing of the package: every layer may raise these.
"""

from __future__ import annotations

__all__ = [
    "BackendUnavailableError",
    "CardError",
    "CheckpointFormatError",
    "DataFormatError",
    "DataNotFoundError",
    "DownloadError",
    "HashMismatchError",
    "InvalidArgumentError",
    "KeyMapError",
    "MissingDependencyError",
    "OfflineError",
    "ResultsFormatError",
    "UnexpectedArgumentError",
    "UnknownModelError",
    "UnsafeCheckpointError",
    "WeightsNotFoundError",
    "ZooError",
]


class ZooError(Exception):
    """Base of every error the zoo raises on purpose (bad input, missing files, refused checkpoints)."""


class InvalidArgumentError(ZooError, ValueError):
    """An argument has a value the function cannot use (the message names it and what is allowed)."""


class UnexpectedArgumentError(InvalidArgumentError, TypeError):
    """A builder was given a keyword argument it does not take (a misspelt ``--model-arg``)."""


class UnknownModelError(ZooError, ValueError):
    """A model name or weights tag that the registry does not know."""


class CardError(ZooError, ValueError):
    """A model card (``models/*.yaml``) breaks the card schema."""


class DataNotFoundError(ZooError, FileNotFoundError):
    """A data file or folder the user named does not exist."""


class DataFormatError(ZooError, ValueError):
    """A data file is malformed: an annotation JSON, a ``.dat`` event file, a label array, an image."""


class ResultsFormatError(DataFormatError):
    """A results CSV is malformed: another version's columns, or a cut-off row."""


class CheckpointFormatError(ZooError, ValueError):
    """The file is not a readable torch checkpoint (corrupt, truncated, inconsistent or another format)."""


class UnsafeCheckpointError(ZooError, ValueError):
    """The checkpoint asks for something the restricted unpickler refuses (a call that could run code,
    or a change to an object that this load did not create)."""


class KeyMapError(ZooError, ValueError):
    """A state dict's keys or shapes do not fit the model (the message lists the differences)."""


class HashMismatchError(ZooError, ValueError):
    """A file's sha256 is not the one its weights entry (or cache record) states."""


class WeightsNotFoundError(ZooError, FileNotFoundError):
    """The weights are neither cached nor downloadable here; the message says how to get them."""


class OfflineError(ZooError, RuntimeError):
    """A download is needed but the offline switch is on."""


class DownloadError(ZooError, OSError):
    """A download failed: an HTTP error, a refused redirect, a deadline, a truncated or unverifiable transfer."""


class MissingDependencyError(ZooError, ImportError):
    """An optional dependency is not installed (the message gives the pip line)."""


class BackendUnavailableError(ZooError, RuntimeError):
    """A requested compute backend (the CuPy I-LIF kernel) cannot run on this machine."""
