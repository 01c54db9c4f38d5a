from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch

from boq_edge.model import CheckpointError, build_model, get_preset, import_official, load_checkpoint, save_checkpoint
from boq_edge.model.checkpoint import read_torch_state_dict


def _small(preset: str = "resnet18-edge"):
    return build_model(get_preset(preset).with_image_size(64, 64))


def test_roundtrip_keeps_weights_config_and_provenance(tmp_path: Path) -> None:
    model = _small()
    p = save_checkpoint(model, tmp_path / "m.boq", {"note": "unit"})
    loaded, config, meta = load_checkpoint(p)
    assert config == model.config and meta["note"] == "unit" and len(meta["checkpoint_sha256"]) == 64
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))
    assert not list(tmp_path.glob(".*tmp"))  # atomic write left no temp file


def test_import_official_then_load(tmp_path: Path) -> None:
    model = _small()
    pth = tmp_path / "official.pth"
    torch.save(model.state_dict(), pth)
    out = import_official(pth, get_preset("resnet18-edge").with_image_size(64, 64), tmp_path / "o.boq")
    loaded, _, meta = load_checkpoint(out)
    assert meta["source"] == "official" and meta["source_file"] == "official.pth"


def test_wrong_preset_names_the_keys(tmp_path: Path) -> None:
    pth = tmp_path / "r18.pth"
    torch.save(_small().state_dict(), pth)
    with pytest.raises(CheckpointError) as e:
        import_official(pth, "resnet50-16384", tmp_path / "x.boq")
    msg = str(e.value)
    assert "missing keys" in msg and "backbone.net.4.0.conv3.weight" in msg
    assert "shape mismatches (" in msg and "aggregator.boqs.0.encoder.linear1.weight has (1024, 256)" in msg
    assert not (tmp_path / "x.boq").exists()


def test_foreign_model_is_refused(tmp_path: Path) -> None:
    pth = tmp_path / "foreign.pth"
    torch.save({"encoder.weight": torch.zeros(3, 3)}, pth)
    with pytest.raises(CheckpointError, match="unexpected keys .*encoder.weight"):
        import_official(pth, "resnet50-16384", tmp_path / "x.boq")


def test_truncated_files_are_refused(tmp_path: Path) -> None:
    model = _small()
    pth = tmp_path / "t.pth"
    torch.save(model.state_dict(), pth)
    pth.write_bytes(pth.read_bytes()[: pth.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        read_torch_state_dict(pth)
    boq = save_checkpoint(model, tmp_path / "t.boq")
    boq.write_bytes(boq.read_bytes()[:-1000])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(boq)


class _Payload:
    """A pickle that would create a file when unpickled, if anything ever unpickled it unsafely."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (os.system, (f"touch {self.marker}",))


def test_code_carrying_pickle_is_refused_and_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pth"
    torch.save({"state_dict": _Payload(marker)}, evil)
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="refused by the safe loader"):
        read_torch_state_dict(evil)
    assert not marker.exists()
    raw = tmp_path / "raw.pth"  # a bare pickle stream, not torch's zip container
    raw.write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(CheckpointError):
        read_torch_state_dict(raw)
    assert not marker.exists()


def test_pth_given_where_boq_expected(tmp_path: Path) -> None:
    pth = tmp_path / "m.pth"
    torch.save(_small().state_dict(), pth)
    with pytest.raises(CheckpointError, match="import-official"):
        load_checkpoint(pth)


def test_plain_safetensors_is_not_a_checkpoint(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    p = tmp_path / "x.boq"
    save_file({"a": torch.zeros(2)}, str(p))
    with pytest.raises(CheckpointError, match="not a boq-edge checkpoint"):
        load_checkpoint(p)


def test_folded_checkpoint_roundtrip(tmp_path: Path) -> None:
    from boq_edge.export.fold import FoldedVPRModel, fold

    model = _small("mobilenetv2-edge")
    folded = fold(model)
    p = save_checkpoint(folded, tmp_path / "f.boq", {"folded": True})
    loaded, _, _ = load_checkpoint(p)
    assert isinstance(loaded, FoldedVPRModel)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), atol=1e-5, rtol=0)
