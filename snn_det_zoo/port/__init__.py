"""Import of the authors' released checkpoints: safe unpickling, key maps, variant detection.

No ultralytics, no authors' code and no code from the checkpoint file runs: see :mod:`.unpickler`. Each
family's module here registers its checkpoint format (:func:`.formats.register_format`); every module of the
package is imported below, so a new family's port module needs no edit elsewhere.
"""

import importlib
import pkgutil

from .checkpoint import AuthorCheckpoint, load_checkpoint
from .formats import register_format, weights_format
from .importer import convert_file, import_weights
from .keymap import KeyMapError, load_state_dict_strict, map_state_dict
from .unpickler import CheckpointFormatError, UnsafeCheckpointError

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "AuthorCheckpoint",
    "CheckpointFormatError",
    "KeyMapError",
    "UnsafeCheckpointError",
    "convert_file",
    "import_weights",
    "load_checkpoint",
    "load_state_dict_strict",
    "map_state_dict",
    "register_format",
    "weights_format",
]
