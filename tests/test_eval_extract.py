"""Descriptor extraction: order, workers (torch DataLoader and thread pool), one preprocessing
function byte for byte, corrupt images, and the on-disk cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import boq_edge.evaluate.extract as ex
from boq_edge.evaluate.extract import extract_descriptors, iter_batches
from boq_edge.preprocess import CorruptImageError, Preprocessing, preprocess_batch, preprocess_image

SPEC = Preprocessing(height=20, width=24)


def _embed(batch: np.ndarray) -> np.ndarray:
    """Stand-in model: per-channel mean and std, plus a corner pixel — enough to tell images apart."""
    return np.concatenate([batch.mean(axis=(2, 3)), batch.std(axis=(2, 3)), batch[:, :, 0, 0]], axis=1)


@pytest.fixture()
def images(tmp_path: Path, write_image) -> list[Path]:
    return [write_image(tmp_path / "img" / f"{i:03d}.png", seed=i, size=(16 + i % 3, 12)) for i in range(11)]


@pytest.mark.parametrize(("loader", "workers"), [("threads", 0), ("threads", 2), ("torch", 2)])
def test_descriptors_are_in_input_order(images: list[Path], loader: str, workers: int) -> None:
    e = extract_descriptors(_embed, images, SPEC, batch_size=4, num_workers=workers, loader=loader, progress=False)
    np.testing.assert_array_equal(e.descriptors, _embed(preprocess_batch(images, SPEC)).astype(np.float32))
    assert e.ok.all() and not e.skipped and e.num_images == 11 and e.images_per_second > 0
    assert e.loader == loader


def test_torch_and_runtime_paths_get_byte_identical_inputs(images: list[Path]) -> None:
    """The torch model (DataLoader workers, tensors) and a torch-free runtime (threads, numpy)
    receive exactly the same bytes, made by the one function in boq_edge.preprocess."""
    torch = pytest.importorskip("torch")
    assert ex.preprocess_batch is preprocess_batch  # no second implementation hides in extract

    seen_torch: list[np.ndarray] = []

    class Recorder(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen_torch.append(x.numpy().copy())
            return x.mean(dim=(2, 3))

    seen_rt: list[np.ndarray] = []

    def runtime(batch: np.ndarray) -> np.ndarray:
        seen_rt.append(batch.copy())
        return batch.mean(axis=(2, 3))

    extract_descriptors(ex.torch_embed_fn(Recorder()), images, SPEC, batch_size=3, num_workers=2, loader="torch",
                        progress=False)
    extract_descriptors(runtime, images, SPEC, batch_size=3, num_workers=2, loader="threads", progress=False)
    a, b = np.concatenate(seen_torch), np.concatenate(seen_rt)
    assert a.dtype == b.dtype == np.float32 and a.shape == (11, 3, 20, 24)
    assert a.tobytes() == b.tobytes()
    assert b.tobytes() == np.stack([preprocess_image(p, SPEC) for p in images]).tobytes()


def test_threads_fallback_without_torch(images: list[Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ex, "_torch_available", lambda: False)
    assert ex.resolve_loader("auto", 2) == "threads"
    with pytest.raises(ImportError, match="threads"):
        ex.resolve_loader("torch", 2)
    e = extract_descriptors(_embed, images, SPEC, batch_size=5, num_workers=2, progress=False)
    assert e.loader == "threads" and e.ok.all()


def test_corrupt_image_names_the_file_or_is_skipped(images: list[Path], tmp_path: Path) -> None:
    bad = images[5]
    bad.write_bytes(bad.read_bytes()[:40])  # truncated PNG
    junk = tmp_path / "img" / "zz_junk.png"
    junk.write_bytes(b"definitely not an image")
    paths = [*images, junk, tmp_path / "img" / "missing.png"]
    with pytest.raises(CorruptImageError, match="005.png") as info:
        extract_descriptors(_embed, paths, SPEC, batch_size=4, num_workers=2, progress=False)
    assert "--skip-corrupt" in str(info.value)
    e = extract_descriptors(_embed, paths, SPEC, batch_size=4, num_workers=2, skip_corrupt=True, progress=False)
    assert [Path(p).name for p, _ in e.skipped] == ["005.png", "zz_junk.png", "missing.png"]
    assert e.ok.tolist() == [i not in (5, 11, 12) for i in range(13)]
    assert not e.descriptors[~e.ok].any()
    good = [p for i, p in enumerate(images) if i != 5]
    np.testing.assert_array_equal(e.descriptors[e.ok], _embed(preprocess_batch(good, SPEC)))
    with pytest.raises(ValueError, match="none of the 1 images"):
        extract_descriptors(_embed, [junk], SPEC, skip_corrupt=True, progress=False)


def test_blank_nordland_frames_are_valid(nordland_dir: Path) -> None:
    blank = sorted(p for p in (nordland_dir / "summer").iterdir() if p.stat().st_size == 137)
    e = extract_descriptors(_embed, blank, Preprocessing(32, 64), batch_size=8, num_workers=2, progress=False)
    assert e.ok.all() and not e.skipped and len(blank) == 17


def test_cache_hits_misses_and_atomic_files(images: list[Path], tmp_path: Path) -> None:
    calls = []

    def counting(batch: np.ndarray) -> np.ndarray:
        calls.append(len(batch))
        return _embed(batch)

    cache = tmp_path / "cache"
    kw = dict(batch_size=4, num_workers=0, cache_dir=cache, cache_key="model:abc|data:xyz", progress=False)
    first = extract_descriptors(counting, images, SPEC, **kw)
    assert sum(calls) == 11 and not first.from_cache and first.cache_path is not None
    again = extract_descriptors(counting, images, SPEC, **kw)
    assert sum(calls) == 11 and again.from_cache
    np.testing.assert_array_equal(again.descriptors, first.descriptors)
    assert again.seconds == pytest.approx(first.seconds)  # timing of the run that made the entry
    # Any change to model key, preprocessing or the image list is a different entry.
    extract_descriptors(counting, images, SPEC.with_size(10, 12), **kw)
    extract_descriptors(counting, images[:-1], SPEC, **kw)
    extract_descriptors(counting, images, SPEC, **{**kw, "cache_key": "model:other|data:xyz"})
    assert sum(calls) == 11 * 3 + 10
    assert not [p for p in cache.iterdir() if p.name.endswith(".tmp")]
    assert len(list(cache.glob("*.npy"))) == len(list(cache.glob("*.json"))) == 4
    # A damaged entry is not trusted: it is re-made.
    first.cache_path.write_bytes(b"garbage")
    redo = extract_descriptors(counting, images, SPEC, **kw)
    assert not redo.from_cache and sum(calls) == 11 * 4 + 10


def test_changed_image_under_the_same_name_is_extracted_again(images: list[Path], tmp_path: Path,
                                                               write_image) -> None:
    """The cache key covers content: new pixels under an old name never get the old descriptors."""
    kw = dict(batch_size=4, num_workers=0, cache_dir=tmp_path / "c", cache_key="model|data", progress=False)
    first = extract_descriptors(_embed, images, SPEC, **kw)
    write_image(images[5], seed=99, size=(16, 12))  # same file name, other content
    again = extract_descriptors(_embed, images, SPEC, **kw)
    assert not again.from_cache
    assert not np.array_equal(again.descriptors[5], first.descriptors[5])
    np.testing.assert_array_equal(again.descriptors, _embed(preprocess_batch(images, SPEC)).astype(np.float32))
    assert extract_descriptors(_embed, images, SPEC, **kw).from_cache  # and that content is cached in turn


def test_cached_skips_still_stop_without_skip_corrupt(images: list[Path], tmp_path: Path) -> None:
    images[2].write_bytes(b"broken")
    kw = dict(batch_size=4, num_workers=0, cache_dir=tmp_path / "c", cache_key="k", progress=False)
    e = extract_descriptors(_embed, images, SPEC, skip_corrupt=True, **kw)
    hit = extract_descriptors(_embed, images, SPEC, skip_corrupt=True, **kw)
    assert hit.from_cache and hit.ok.tolist() == e.ok.tolist() and hit.skipped == e.skipped
    with pytest.raises(CorruptImageError, match="002.png"):
        extract_descriptors(_embed, images, SPEC, **kw)


def test_bad_embed_output_and_arguments(images: list[Path]) -> None:
    with pytest.raises(ValueError, match="expected"):
        extract_descriptors(lambda b: b.mean(axis=(1, 2, 3)), images, SPEC, num_workers=0, progress=False)
    with pytest.raises(ValueError, match="batch size"):
        list(iter_batches(images, SPEC, batch_size=0))
    with pytest.raises(ValueError, match="no images"):
        extract_descriptors(_embed, [], SPEC, progress=False)
    with pytest.raises(ValueError, match="unknown loader"):
        extract_descriptors(_embed, images, SPEC, loader="gpu", progress=False)


def test_data_and_evaluation_work_without_torch(images: list[Path]) -> None:
    """Devices have no torch: reading, extraction (thread workers) and recall must not need it."""
    import subprocess
    import sys

    code = f"""
import sys
sys.modules["torch"] = None  # any import of torch now fails
import numpy as np
import boq_edge.data, boq_edge.evaluate
from boq_edge.evaluate import extract_descriptors, compute_recall
from boq_edge.preprocess import Preprocessing
paths = {[str(p) for p in images]!r}
e = extract_descriptors(lambda b: b.mean(axis=(2, 3)), paths, Preprocessing(8, 8), batch_size=4, num_workers=2,
                        progress=False)
assert e.loader == "threads" and e.ok.all()
r, _ = compute_recall(e.descriptors, e.descriptors, [np.array([i]) for i in range(len(paths))], [1])
print("ok", r.num_queries)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok 11"
