"""Shared fixtures. Real data is found in exactly one place: ``shared_dir``.

``../shared`` sits beside the repository on developer machines and in CI; the
``BOQ_EDGE_SHARED`` environment variable points elsewhere. Without it, tests that need
real data are skipped locally but fail in CI (``CI`` set), so a missing data folder can
never turn into a green run that tested nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def _find_shared() -> Path | None:
    env = os.environ.get("BOQ_EDGE_SHARED")
    candidates = [Path(env)] if env else []
    candidates.append(REPO_ROOT.parent / "shared")
    for c in candidates:
        if (c / "data").is_dir() or (c / "weights").is_dir():
            return c
    return None


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    found = _find_shared()
    if found is None:
        msg = "../shared (real data and weights) not found; set BOQ_EDGE_SHARED"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return found


@pytest.fixture(scope="session")
def nordland_dir(shared_dir: Path) -> Path:
    d = shared_dir / "data" / "nordland-64x32"
    assert (d / "summer").is_dir() and (d / "winter").is_dir(), f"Nordland data missing under {d}"
    return d


@pytest.fixture(scope="session")
def mobilenet_weights(shared_dir: Path) -> Path:
    p = shared_dir / "weights" / "mobilenetv2_imagenet_features.pt"
    assert p.is_file(), f"MobileNetV2 weights missing: {p}"
    return p


@pytest.fixture(scope="session")
def write_image():
    """``write_image(path, seed=0, size=(W, H))`` writes a small random RGB image (dataset fixtures)."""
    import numpy as np
    from PIL import Image

    def _write(path: Path, seed: int = 0, size: tuple[int, int] = (16, 12)) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(seed)
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
        return path

    return _write


# Installed before anything else runs: every import of torch (or torch.*) fails. Prepended to
# ``python -c`` scripts, or written as a sitecustomize.py so that child processes get it too.
BLOCK_TORCH = """
import sys
class _NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)
        return None
sys.meta_path.insert(0, _NoTorch())
for m in [m for m in sys.modules if m == "torch" or m.startswith("torch.")]:
    del sys.modules[m]
"""


@pytest.fixture(scope="session")
def block_torch() -> str:
    """Python source that makes ``import torch`` fail (the device has only a runtime installed)."""
    return BLOCK_TORCH


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random MobileNetV2-preset checkpoint at 64×64: the smallest real model for export/CLI tests."""
    import torch

    from boq_edge.model import build_model, get_preset, save_checkpoint

    torch.manual_seed(0)
    model = build_model(get_preset("mobilenetv2-2048").with_image_size(64, 64))
    return save_checkpoint(model, tmp_path_factory.mktemp("ckpt") / "tiny.boq", {"source": "test"})
