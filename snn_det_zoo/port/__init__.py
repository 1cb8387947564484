"""Import of the authors' released checkpoints: safe unpickling, key maps, variant detection.

No ultralytics, no authors' code and no code from the checkpoint file runs: see :mod:`.unpickler`.
"""

from .checkpoint import AuthorCheckpoint, load_checkpoint
from .ems_yolo import import_ems_yolo
from .importer import convert_file, import_weights
from .keymap import KeyMapError, map_state_dict
from .spikeyolo import import_spikeyolo
from .unpickler import CheckpointFormatError, UnsafeCheckpointError

__all__ = [
    "AuthorCheckpoint",
    "CheckpointFormatError",
    "KeyMapError",
    "UnsafeCheckpointError",
    "convert_file",
    "import_ems_yolo",
    "import_spikeyolo",
    "import_weights",
    "load_checkpoint",
    "map_state_dict",
]
