"""Image preprocessing shared by the torch reference and every device runtime.

It is written once, in numpy + PIL, and described by a plain :class:`Preprocessing`
record that travels in checkpoints and bundle manifests. A device that reads the
manifest reproduces the reference input array bit for bit, so any descriptor
difference measured later is the model's, never the input pipeline's. No torch here.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_SIDE = 4096  # model input pixels a side: bounded before any buffer is allocated
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# PIL resampling filters by the names stored in manifests. PIL's BICUBIC/BILINEAR are
# antialiased when downscaling, which is what torchvision's Resize(antialias=True) does
# on PIL images in the official BoQ transform.
_FILTERS = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
}

ImageLike = str | os.PathLike | Image.Image | np.ndarray


def _int(v: Any, name: str) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v != int(v):
        raise ValueError(f"preprocessing {name} must be a whole number, got {v!r}")
    return int(v)


class CorruptImageError(ValueError):
    """An image file that cannot be decoded; the message names the file."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path = str(path)
        super().__init__(f"cannot read image {self.path}: {reason}")


@dataclass(frozen=True)
class Preprocessing:
    """Everything needed to turn an image file into the model's input array."""

    height: int
    width: int
    interpolation: str = "bicubic"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    layout: str = "NCHW"
    exif_orientation: bool = True  # turn photos upright by their EXIF Orientation tag
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.interpolation not in _FILTERS:
            raise ValueError(f"unknown interpolation {self.interpolation!r}; choose from {sorted(_FILTERS)}")
        if self.layout != "NCHW":
            raise ValueError(f"only NCHW layout is supported, got {self.layout!r}")
        if not (0 < self.height <= MAX_SIDE and 0 < self.width <= MAX_SIDE):
            raise ValueError(f"preprocessing size {self.height}x{self.width} is outside 1..{MAX_SIDE} pixels a side")
        for name in ("mean", "std"):
            v = getattr(self, name)
            if len(v) != 3 or not all(isinstance(x, float) and math.isfinite(x) for x in v):
                raise ValueError(f"preprocessing {name} must be three finite numbers, got {list(v)}")
        if min(self.std) <= 0:
            raise ValueError(f"preprocessing std must be > 0 in every channel, got {list(self.std)}")

    @property
    def size(self) -> tuple[int, int]:
        return (self.height, self.width)

    def with_size(self, height: int, width: int) -> Preprocessing:
        d = self.to_dict()
        d.update(height=height, width=width)
        return Preprocessing.from_dict(d)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["mean"] = list(self.mean)
        d["std"] = list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Preprocessing:
        """From a manifest or checkpoint header; any malformed field is a ValueError naming it."""
        if not isinstance(d, dict):
            raise ValueError(f"preprocessing must be a mapping, got {type(d).__name__}")
        known = {"height", "width", "interpolation", "mean", "std", "layout", "exif_orientation", "extra"}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown preprocessing fields: {sorted(unknown)}")
        try:
            mean, std = d.get("mean", IMAGENET_MEAN), d.get("std", IMAGENET_STD)
            return cls(
                height=_int(d["height"], "height"),
                width=_int(d["width"], "width"),
                interpolation=str(d.get("interpolation", "bicubic")),
                mean=tuple(float(x) for x in mean),  # type: ignore[arg-type]
                std=tuple(float(x) for x in std),  # type: ignore[arg-type]
                layout=str(d.get("layout", "NCHW")),
                exif_orientation=bool(d.get("exif_orientation", True)),
                extra=dict(d.get("extra", {})),
            )
        except KeyError as e:
            raise ValueError(f"preprocessing lacks {e}") from None
        except TypeError as e:
            raise ValueError(f"preprocessing has a malformed field: {e}") from None


MAX_MEGAPIXELS = 80  # larger images are refused before decoding (decompression bombs; no VPR photo is this big)


def to_rgb8(im: Image.Image) -> Image.Image:
    """Any PIL mode → 8-bit RGB, scaled by the values' real range (PIL's own convert() clips instead).

    16-bit images (``I;16``, ``I;16B``, ``I`` holding 0…65535) are divided by 257, so a
    16-bit frame and its 8-bit version give the same pixels; float images (``F``) in 0…1 are
    multiplied by 255 and any other float range is stretched from its minimum to its
    maximum; 32-bit integers beyond 16 bits likewise. Bilevel, palette (with or without
    transparency), grey + alpha, CMYK and YCbCr go through PIL's conversion, which is exact
    for them. Alpha is dropped (composited on nothing: the colour channels are kept).
    """
    if im.mode in ("RGB",):
        return im
    if im.mode.startswith("I") or im.mode == "F":
        a = np.asarray(im, dtype=np.float64)
        finite = a[np.isfinite(a)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
        if im.mode == "F" and lo >= 0.0 and hi <= 1.0:
            scaled = a * 255.0
        elif im.mode != "F" and lo >= 0 and hi <= 65535:
            scaled = a / 257.0
        else:
            scaled = (a - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(a)
        g = np.clip(np.nan_to_num(np.rint(scaled), nan=0.0), 0, 255).astype(np.uint8)
        return Image.fromarray(np.stack([g] * 3, axis=-1), mode="RGB")
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    return im.convert("RGB")


def load_image(path: str | os.PathLike, exif_orientation: bool = True) -> Image.Image:
    """Decode an image file fully (not lazily) into 8-bit RGB; a truncated, unknown or huge file fails here, named.

    ``exif_orientation`` turns the pixels upright as the camera's EXIF Orientation tag says
    (a phone photo held sideways is stored rotated); ``Preprocessing.exif_orientation =
    False`` keeps the stored orientation.
    """
    p = Path(path)
    try:
        with warnings.catch_warnings():  # PIL warns from 89 MP on; the limit below refuses such images already
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            opened = Image.open(p)
        with opened as im:
            w, h = im.size
            if w * h > MAX_MEGAPIXELS * 1_000_000:
                raise CorruptImageError(p, f"{w}x{h} is {w * h / 1e6:.0f} megapixels, over the {MAX_MEGAPIXELS}-"
                                           f"megapixel limit (a decompression bomb?)")
            im.load()
            upright: Image.Image = ImageOps.exif_transpose(im) if exif_orientation else im
            return to_rgb8(upright)
    except (FileNotFoundError, CorruptImageError):
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise CorruptImageError(p, str(e) or type(e).__name__) from e


def pixel_digest(path: str | os.PathLike) -> str | None:
    """sha256 of an image's decoded RGB pixels (and size), or None for a constant image.

    Two files with equal pixels are the same image whatever their encoding (a PNG re-saved,
    a copy under another name); a constant image (a blank frame) identifies no place, so it
    gets no digest and never counts as a shared image.
    """
    import hashlib

    arr = np.asarray(load_image(path))
    if arr.size == 0 or arr.min() == arr.max():
        return None
    h = hashlib.sha256(f"{arr.shape}".encode())
    h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


def _as_pil(item: ImageLike, exif_orientation: bool = True) -> Image.Image:
    if isinstance(item, Image.Image):
        return to_rgb8(item)
    if isinstance(item, np.ndarray):
        arr = item
        if arr.ndim == 2:
            arr = np.stack([arr] * 3, axis=-1)
        if arr.ndim != 3 or arr.shape[-1] not in (3, 4):
            raise ValueError(f"image arrays must be HxWx3 (or HxW) uint8, got shape {arr.shape}")
        if arr.dtype != np.uint8:
            raise ValueError(f"image arrays must be uint8 (raw pixels), got {arr.dtype}")
        return Image.fromarray(arr[..., :3], mode="RGB")
    return load_image(item, exif_orientation)


def preprocess_image(item: ImageLike, spec: Preprocessing) -> np.ndarray:
    """One image → float32 array (3, H, W), resized and normalised as ``spec`` says."""
    im = _as_pil(item, spec.exif_orientation)
    if im.size != (spec.width, spec.height):
        im = im.resize((spec.width, spec.height), _FILTERS[spec.interpolation])
    pixels = np.asarray(im, dtype=np.float32) / np.float32(255.0)
    x = (pixels - np.asarray(spec.mean, dtype=np.float32)) / np.asarray(spec.std, dtype=np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1), dtype=np.float32)


def preprocess_batch(items: Sequence[ImageLike], spec: Preprocessing) -> np.ndarray:
    """Images → float32 NCHW batch; the single entry point for torch and runtimes alike."""
    if len(items) == 0:
        return np.zeros((0, 3, spec.height, spec.width), dtype=np.float32)
    return np.stack([preprocess_image(it, spec) for it in items], axis=0)
