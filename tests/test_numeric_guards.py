"""Numbers that would make every descriptor NaN, or allocate until memory runs out, are refused by name."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from boq_edge.cli import _load_commands, app

_load_commands()
runner = CliRunner()


def _rewrite(src: Path, dst: Path, edit_config=None, edit_tensors=None) -> Path:  # noqa: ANN001
    """A copy of a .boq checkpoint with its config header and/or tensors edited."""
    with safe_open(str(src), framework="pt") as f:
        meta = dict(f.metadata())
    tensors = load_file(str(src))
    if edit_config is not None:
        cfg = json.loads(meta["config"])
        edit_config(cfg)
        meta["config"] = json.dumps(cfg)
    if edit_tensors is not None:
        edit_tensors(tensors)
    save_file(tensors, str(dst), metadata=meta)
    return dst


def test_nan_weight_is_refused_at_load(tiny_checkpoint: Path, tmp_path: Path) -> None:
    def poison(t: dict) -> None:
        key = next(k for k in sorted(t) if k.endswith("weight") and t[k].is_floating_point())
        t[key].view(-1)[0] = float("nan")

    bad = _rewrite(tiny_checkpoint, tmp_path / "nan.boq", edit_tensors=poison)
    for args in (["info", str(bad)], ["export", str(bad), "--target", "onnx", "-o", str(tmp_path / "b")]):
        r = runner.invoke(app, args)
        assert r.exit_code == 2 and "non-finite (NaN/inf) weights in 1 tensor" in r.output, r.output
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("field,value,message", [
    ("num_layers", 1e7, "num_layers = 10000000.0 is outside 1..16"),
    ("proj_channels", 64 * 100000, "proj_channels = 6400000 is outside 1..4096"),
    ("num_queries", -3, "num_queries = -3 is outside"),
    ("row_dim", "16", "row_dim = '16' is outside"),
])
def test_absurd_model_config_is_refused_before_allocating(tiny_checkpoint: Path, tmp_path: Path, field: str,
                                                          value: object, message: str) -> None:
    bad = _rewrite(tiny_checkpoint, tmp_path / "h.boq", edit_config=lambda c: c.update({field: value}))
    t0 = time.perf_counter()
    r = runner.invoke(app, ["info", str(bad)])
    assert r.exit_code == 2 and message in r.output, r.output
    assert time.perf_counter() - t0 < 60  # refused from the header, not after building a model


@pytest.mark.parametrize("pre,message", [
    ({"std": [0.0, 0.224, 0.225]}, "std must be > 0"),
    ({"mean": [float("nan"), 0.456, 0.406]}, "mean must be three finite numbers"),
    ({"mean": [0.5, 0.5]}, "mean must be three finite numbers"),
    ({"height": 100000, "width": 100000}, "preprocessing size 100000x100000 is outside 1..4096"),
    ({"height": "tall"}, "height must be a whole number"),
])
def test_bad_preprocessing_in_a_header_is_named(tiny_checkpoint: Path, tmp_path: Path, pre: dict, message: str) -> None:
    bad = _rewrite(tiny_checkpoint, tmp_path / "p.boq",
                   edit_config=lambda c: c["preprocessing"].update(pre))
    r = runner.invoke(app, ["info", str(bad)])
    assert r.exit_code == 2 and message in r.output, r.output


def test_runtime_refuses_non_finite_descriptors(tiny_checkpoint: Path, tmp_path: Path, write_image) -> None:
    pytest.importorskip("onnxruntime")
    from boq_edge.export.api import export_model
    from boq_edge.export.options import ExportOptions

    from boq_edge.runtime import load_runtime
    from boq_edge.runtime.base import NonFiniteDescriptorError

    bundle = export_model(tiny_checkpoint, tmp_path / "b", ExportOptions("onnx"))
    rt = load_runtime(bundle)
    real = rt._run
    rt._run = lambda batch: np.where(np.arange(len(batch))[:, None] == 1, np.nan, real(batch))  # type: ignore[method-assign]
    imgs = [write_image(tmp_path / f"{i}.png", seed=i) for i in range(3)]
    with pytest.raises(NonFiniteDescriptorError, match=r"non-finite descriptors for 1 of 3 inputs .*/1\.png"):
        rt.embed(imgs)
