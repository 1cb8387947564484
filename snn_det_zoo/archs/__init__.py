"""Model families; importing one registers its variants."""

from . import ems_yolo, spikeyolo

__all__ = ["ems_yolo", "spikeyolo"]
