"""RandAugment on PIL images (Cubuk et al. 2020), as torchvision implements it, without torchvision.

GSV-Cities/BoQ train with ``torchvision.transforms.RandAugment(num_ops=3)``. This is the
same op list and magnitude table (31 bins, magnitude 9 by default), but driven by a numpy
``Generator`` passed in per image, so augmentation is reproducible from the sampler's
item seed alone (workers, resumes and ranks cannot change it).
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

NUM_BINS = 31
OPS = ("Identity", "ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Brightness", "Color",
       "Contrast", "Sharpness", "Posterize", "Solarize", "AutoContrast", "Equalize")
_SIGNED = {"ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Brightness", "Color", "Contrast", "Sharpness"}


def _magnitude(op: str, level: int, size: tuple[int, int]) -> float:
    """torchvision's magnitude table at bin ``level`` (0…30)."""
    frac = level / (NUM_BINS - 1)
    w, h = size
    if op in ("ShearX", "ShearY"):
        return 0.3 * frac
    if op == "TranslateX":
        return 150.0 / 331.0 * w * frac
    if op == "TranslateY":
        return 150.0 / 331.0 * h * frac
    if op == "Rotate":
        return 30.0 * frac
    if op in ("Brightness", "Color", "Contrast", "Sharpness"):
        return 0.9 * frac
    if op == "Posterize":
        return float(8 - int(round(level / ((NUM_BINS - 1) / 4))))
    if op == "Solarize":
        return 255.0 * (1 - frac)
    return 0.0


def _apply(im: Image.Image, op: str, mag: float) -> Image.Image:
    fill = (0, 0, 0)
    if op == "Identity":
        return im
    if op == "ShearX":  # shear about the centre, like torchvision's affine
        return im.transform(im.size, Image.Transform.AFFINE, (1, mag, -mag * im.size[1] / 2, 0, 1, 0),
                            Image.Resampling.NEAREST, fillcolor=fill)
    if op == "ShearY":
        return im.transform(im.size, Image.Transform.AFFINE, (1, 0, 0, mag, 1, -mag * im.size[0] / 2),
                            Image.Resampling.NEAREST, fillcolor=fill)
    if op == "TranslateX":
        return im.transform(im.size, Image.Transform.AFFINE, (1, 0, -int(mag), 0, 1, 0), fillcolor=fill)
    if op == "TranslateY":
        return im.transform(im.size, Image.Transform.AFFINE, (1, 0, 0, 0, 1, -int(mag)), fillcolor=fill)
    if op == "Rotate":
        return im.rotate(mag, resample=Image.Resampling.NEAREST, fillcolor=fill)
    if op == "Brightness":
        return ImageEnhance.Brightness(im).enhance(1 + mag)
    if op == "Color":
        return ImageEnhance.Color(im).enhance(1 + mag)
    if op == "Contrast":
        return ImageEnhance.Contrast(im).enhance(1 + mag)
    if op == "Sharpness":
        return ImageEnhance.Sharpness(im).enhance(1 + mag)
    if op == "Posterize":
        return ImageOps.posterize(im, int(mag))
    if op == "Solarize":
        return ImageOps.solarize(im, int(mag))
    if op == "AutoContrast":
        return ImageOps.autocontrast(im)
    if op == "Equalize":
        return ImageOps.equalize(im)
    raise ValueError(f"unknown RandAugment op {op!r}")


class RandAugment:
    """``num_ops`` ops drawn uniformly from :data:`OPS`, each at ``magnitude`` (of 30), random sign."""

    def __init__(self, num_ops: int = 3, magnitude: int = 9) -> None:
        if num_ops < 0:
            raise ValueError(f"num_ops must be >= 0, got {num_ops}")
        if not 0 <= magnitude < NUM_BINS:
            raise ValueError(f"magnitude must be in 0..{NUM_BINS - 1}, got {magnitude}")
        self.num_ops, self.magnitude = num_ops, magnitude

    def __call__(self, im: Image.Image, rng: np.random.Generator) -> Image.Image:
        for _ in range(self.num_ops):
            op = OPS[int(rng.integers(len(OPS)))]
            mag = _magnitude(op, self.magnitude, im.size)
            if op in _SIGNED and rng.random() < 0.5:
                mag = -mag
            im = _apply(im, op, mag)
        return im

    def __repr__(self) -> str:
        return f"RandAugment(num_ops={self.num_ops}, magnitude={self.magnitude})"


def build_augment(name: str, num_ops: int = 3, magnitude: int = 9) -> RandAugment | None:
    """``"randaugment"`` or ``"none"``."""
    if name == "none":
        return None
    if name == "randaugment":
        return RandAugment(num_ops, magnitude)
    raise ValueError(f"unknown augmentation {name!r}; choose randaugment or none")
