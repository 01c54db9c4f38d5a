"""RandAugment: every op runs, results depend only on the generator, sizes are kept."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from boq_edge.train.augment import NUM_BINS, OPS, RandAugment, _apply, _magnitude, build_augment


@pytest.fixture
def image() -> Image.Image:
    return Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 64, 3), dtype=np.uint8))


@pytest.mark.parametrize("op", OPS)
def test_every_op_keeps_size_and_mode(image: Image.Image, op: str) -> None:
    out = _apply(image, op, _magnitude(op, 9, image.size))
    assert out.size == image.size and out.mode == "RGB"


def test_augmentation_is_reproducible_from_the_generator(image: Image.Image) -> None:
    aug = RandAugment(3, 9)
    a = np.asarray(aug(image, np.random.default_rng([1, 2])))
    b = np.asarray(aug(image, np.random.default_rng([1, 2])))
    assert np.array_equal(a, b)
    outs = {np.asarray(aug(image, np.random.default_rng(s))).tobytes() for s in range(8)}
    assert len(outs) > 1


def test_build_augment_and_bounds() -> None:
    assert build_augment("none") is None
    assert isinstance(build_augment("randaugment", 2, 5), RandAugment)
    with pytest.raises(ValueError):
        build_augment("autoaugment")
    with pytest.raises(ValueError):
        RandAugment(2, NUM_BINS)
