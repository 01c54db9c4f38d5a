"""End-to-end training on a tiny synthetic aligned set: checkpoints, provenance, exact resume, CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from boq_edge.cli import _load_commands, app
from boq_edge.model import load_checkpoint
from boq_edge.train import TrainConfig, load_state, train
from boq_edge.train.trainer import WarmupStepSchedule


def make_aligned(root: Path, frames: int = 24) -> Path:
    """Two traversals of ``frames`` places: a per-place pattern plus per-traversal noise."""
    rng = np.random.default_rng(0)
    for i in range(1, frames + 1):
        base = rng.integers(0, 255, (8, 16, 3))
        for t in ("summer", "winter"):
            img = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
            (root / t).mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).resize((32, 16), Image.Resampling.NEAREST).save(root / t / f"images-{i * 10:05d}.png")
    return root


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_aligned(tmp_path_factory.mktemp("aligned"))


def tiny_config(data: Path, out: Path, **kw: object) -> TrainConfig:
    base = {"preset": "mobilenetv2-edge", "data": str(data), "format": "aligned", "frames": ":130",
            "val": str(data), "val_format": "aligned", "val_options": {"frames": "130:"}, "image_size": (32, 32),
            "epochs": 2, "batch_places": 4, "lr": 1e-3, "warmup_epochs": 1, "lr_step_epochs": 1,
            "num_workers": 0, "threads": 1, "out": str(out), "progress": False, "eval_batch_size": 8}
    return TrainConfig.from_dict({**TrainConfig().to_dict(), **base, **kw})


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)[0].state_dict()


def test_schedule_warms_up_then_steps_down() -> None:
    s = WarmupStepSchedule(1e-3, steps_per_epoch=10, warmup_epochs=1, step_epochs=2, gamma=0.3)
    assert s.lr(0) == pytest.approx(1e-4) and s.lr(9) == pytest.approx(1e-3)
    assert s.lr(19) == pytest.approx(1e-3) and s.lr(20) == pytest.approx(3e-4) and s.lr(40) == pytest.approx(9e-5)


def test_training_writes_checkpoints_with_provenance(tiny_data: Path, tmp_path: Path) -> None:
    res = train(tiny_config(tiny_data, tmp_path / "run"))
    files = sorted(p.name for p in (tmp_path / "run").iterdir())
    assert files == ["best.boq", "best.state.pt", "config.json", "last.boq", "last.state.pt", "metrics.csv"]
    assert res.epochs_completed == 2 and res.global_step == 2 * 3 and res.best_r1 is not None
    model, config, meta = load_checkpoint(tmp_path / "run" / "last.boq")
    assert config.image_size == (32, 32) and config.train_image_size == (32, 32)
    assert meta["source"] == "train" and meta["epochs_completed"] == 2 and meta["boq_edge_version"]
    assert meta["train_data"]["params"]["frames"] == ":130" and meta["train_data"]["num_places"] == 12
    assert meta["val_data"]["params"]["frames"] == [130, None]
    assert meta["best_r1"] == res.best_r1 and meta["hyperparameters"]["lr"] == 1e-3 and "git_commit" in meta
    rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    assert [r["epoch"] for r in rows] == ["1", "2"] and all(r["R@1"] for r in rows)
    state = load_state(tmp_path / "run" / "last.state.pt")  # weights_only=True inside
    assert state["epoch"] == 2 and state["batch_in_epoch"] == 0 and state["schedule_step"] == 6


def test_resume_reproduces_the_uninterrupted_run(tiny_data: Path, tmp_path: Path) -> None:
    cfg = tiny_config(tiny_data, tmp_path / "a", val=None, val_options={}, epochs=3)
    full = train(cfg)
    # Interrupt mid-epoch 2 (3 steps per epoch), then resume from the run directory.
    part = train(cfg.replace(out=str(tmp_path / "b")), stop_after_steps=4)
    assert part.interrupted and part.global_step == 4
    assert load_state(tmp_path / "b" / "last.state.pt")["batch_in_epoch"] == 1
    resumed = train(cfg.replace(out=str(tmp_path / "b")), resume=tmp_path / "b")
    assert resumed.global_step == full.global_step == 9
    wa, wb = _weights(tmp_path / "a" / "last.boq"), _weights(tmp_path / "b" / "last.boq")
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    rows = list(csv.DictReader(open(tmp_path / "b" / "metrics.csv")))
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]


def test_resume_from_best_restarts_after_the_best_epoch(tiny_data: Path, tmp_path: Path) -> None:
    train(tiny_config(tiny_data, tmp_path / "r", epochs=2))
    best_epoch = load_state(tmp_path / "r" / "best.state.pt")["epoch"]
    res = train(tiny_config(tiny_data, tmp_path / "r", epochs=3), resume=tmp_path / "r" / "best.boq")
    assert res.epochs_completed == 3
    rows = list(csv.DictReader(open(tmp_path / "r" / "metrics.csv")))
    assert [int(r["epoch"]) for r in rows] == [*range(1, best_epoch + 1), *range(best_epoch + 1, 4)]


def test_cli_trains_from_a_config_file_and_errors_are_one_line(tiny_data: Path, tmp_path: Path) -> None:
    _load_commands()
    runner = CliRunner()
    cfg = tmp_path / "train.toml"
    cfg.write_text(f'data = "{tiny_data}"\nformat = "aligned"\nframes = ":130"\nimage-size = [32, 32]\n'
                   'epochs = 1\nbatch_places = 4\nnum_workers = 0\nthreads = 1\n')
    out = tmp_path / "cli"
    r = runner.invoke(app, ["train", "--config", str(cfg), "--out", str(out), "--no-progress", "--lr", "5e-4"])
    assert r.exit_code == 0, r.output
    assert json.loads((out / "config.json").read_text())["lr"] == 5e-4
    assert (out / "last.boq").is_file() and not (out / "best.boq").exists()  # no --val: no best

    r = runner.invoke(app, ["train", "--config", str(cfg), "--out", str(out), "--val", str(tiny_data),
                            "--val-frames", "100:"])
    assert r.exit_code == 2 and "both the training data and the validation" in r.output
    r = runner.invoke(app, ["train", "--preset", "mobilenetv2-edge"])
    assert r.exit_code == 2 and "--data" in r.output
    r = runner.invoke(app, ["train", "--data", str(tmp_path / "nope")])
    assert r.exit_code == 2 and "does not exist" in r.output
    r = runner.invoke(app, ["train", "--resume", str(out), "--lr", "1e-2"])
    assert r.exit_code == 2 and "lr" in r.output


def test_validator_with_frozen_prefix_cache_matches_full_validation(tiny_data: Path) -> None:
    from dataclasses import replace

    from boq_edge.data import read_benchmark
    from boq_edge.model import build_model, get_preset
    from boq_edge.train.epoch_recall import Validator, epoch_recall, split_frozen_prefix

    torch.manual_seed(0)
    config = replace(get_preset("mobilenetv2-edge").with_image_size(32, 64), trainable_stages=4)
    model = build_model(config)
    bench = read_benchmark(tiny_data, "aligned", frames="130:")
    prefix, rest = split_frozen_prefix(model)  # type: ignore[misc]
    assert len(prefix) == 10 and len(rest) == 4
    cached = Validator(bench, config.preprocessing, (1, 2, 5), batch_size=5)
    full = epoch_recall(model, bench, config.preprocessing, (1, 2, 5), batch_size=5)
    assert cached(model).recalls == full.recalls
    with torch.no_grad():  # a training step changes only the trainable part: the cache stays valid
        for p in rest.parameters():
            p.add_(0.05 * torch.randn_like(p))
    assert cached(model).recalls == epoch_recall(model, bench, config.preprocessing, (1, 2, 5), batch_size=5).recalls
    assert cached._usable
    assert split_frozen_prefix(build_model(replace(config, trainable_stages=14))) is None
