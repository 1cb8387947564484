"""Reading image files as the models take them: uint8 ``[3, H, W]`` RGB tensors.

Pillow decodes them (it comes with torchvision, whose own image codecs are deprecated since 0.29). A file that
is missing, is not an image, is cut off, or declares more pixels than Pillow's decompression-bomb limit is an
error that names it; nothing larger than that limit is ever allocated.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch

from ..errors import DataFormatError, DataNotFoundError

__all__ = ["read_image"]


def read_image(path: str | os.PathLike[str], exif_transpose: bool = False) -> torch.Tensor:
    """The image at ``path`` as uint8 ``[3, H, W]``; ``exif_transpose`` turns a photo upright as its EXIF
    orientation says (as cameras and viewers do), which datasets with boxes in stored pixels must not do.

    Raises:
        DataNotFoundError: no such file (or not a regular file).
        DataFormatError: not a decodable image, truncated, or more pixels than Pillow's ``MAX_IMAGE_PIXELS``.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"image file not found: {path}" if not path.exists() else
                                f"{path}: not a regular file")
    try:
        with warnings.catch_warnings():
            # Pillow only warns between its limit and twice it: refuse there too, before decoding.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                if exif_transpose:
                    image = ImageOps.exif_transpose(image)
                rgb = np.asarray(image.convert("RGB"))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DataFormatError(f"{path}: too many pixels to decode safely ({exc})") from exc
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DataFormatError(f"{path}: cannot decode the image ({exc})") from exc
    return torch.from_numpy(rgb.copy()).permute(2, 0, 1).contiguous()
