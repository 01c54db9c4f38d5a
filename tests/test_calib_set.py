"""Calibration manifests: seeded, reproducible, verified on read, and never the evaluation split."""

from __future__ import annotations

import json
import re
import shutil
import warnings
from pathlib import Path

import pytest
from boq_edge.calibration import (
    CalibrationError,
    CalibrationOverlapError,
    FewCalibrationImagesWarning,
    RepeatedCalibrationImagesWarning,
    build_calibration_set,
    calibration_set_from_paths,
    check_not_eval,
    load_calibration_set,
    save_calibration_set,
)
from typer.testing import CliRunner

from boq_edge.data import read_benchmark
from boq_edge.fileio import file_sha256


def _quiet_build(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FewCalibrationImagesWarning)
        warnings.simplefilter("ignore", RepeatedCalibrationImagesWarning)
        return build_calibration_set(*args, **kwargs)


def test_round_trip_is_reproducible(nordland_dir: Path, tmp_path: Path) -> None:
    a = _quiet_build(nordland_dir, 40, seed=3, format="aligned", options={"frames": ":25000"})
    b = _quiet_build(nordland_dir, 40, seed=3, format="aligned", options={"frames": ":25000"})
    c = _quiet_build(nordland_dir, 40, seed=4, format="aligned", options={"frames": ":25000"})
    assert a.paths == b.paths and a.paths != c.paths
    assert len(a) == 40 and len(set(a.paths)) == 40
    assert {p.parent.name for p in a.paths} <= {"summer", "winter"}
    assert all(int(p.stem.split("-")[1]) < 25000 for p in a.paths)
    saved = save_calibration_set(a, tmp_path / "calib.json")
    assert saved.content_hash() == save_calibration_set(b, tmp_path / "calib2.json").content_hash()
    back = load_calibration_set(tmp_path / "calib.json")
    assert back.paths == a.paths and back.sha256 == a.sha256 and back.seed == 3
    assert back.content_hash() == saved.content_hash()
    d = json.loads((tmp_path / "calib.json").read_text())
    assert d["images"][0]["path"].startswith(("summer/", "winter/"))  # relative to the dataset root
    assert d["source"]["params"]["frames"] == [None, 25000]


def test_changed_image_is_refused_on_read(nordland_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "data"
    shutil.copytree(nordland_dir / "winter", root / "winter", ignore=lambda d, names: sorted(names)[60:])
    calib = save_calibration_set(_quiet_build(root, 10, format="images"), tmp_path / "c.json")
    victim = calib.paths[0]
    victim.write_bytes(victim.read_bytes() + b"\0")
    with pytest.raises(CalibrationError, match="changed since"):
        load_calibration_set(tmp_path / "c.json")
    assert len(load_calibration_set(tmp_path / "c.json", verify=False)) == 10


def test_few_images_warn(nordland_dir: Path) -> None:
    with pytest.warns(FewCalibrationImagesWarning, match="fewer than 300"):
        build_calibration_set(nordland_dir, 12, format="aligned", options={"frames": ":25000"})


def test_eval_split_is_refused(nordland_dir: Path) -> None:
    evaluation = read_benchmark(nordland_dir, format="aligned", frames="25000:")
    # Sampled from all frames: the frame-range rule refuses even before looking at paths.
    with pytest.raises(CalibrationOverlapError, match="overlap the evaluation frames"):
        _quiet_build(nordland_dir, 20, format="aligned", exclude=[evaluation])
    with pytest.raises(CalibrationOverlapError, match=r"frames \[25000:\] overlap"):
        _quiet_build(nordland_dir, 20, format="aligned", options={"frames": "25000:"}, exclude=[evaluation])
    # The same folder read as plain images (no frame range to compare): refused by path.
    with pytest.raises(CalibrationOverlapError, match="belong to the evaluation split"):
        _quiet_build(nordland_dir / "winter", 300, format="images", exclude=[evaluation])
    # Disjoint frames pass.
    ok = _quiet_build(nordland_dir, 20, format="aligned", options={"frames": ":25000"}, exclude=[evaluation])
    assert len(ok) == 20


def test_copied_eval_images_are_refused_by_content(nordland_dir: Path, tmp_path: Path) -> None:
    evaluation = read_benchmark(nordland_dir, format="aligned", frames="25000:")
    copied = tmp_path / "my_calib_images"
    copied.mkdir()
    for p in evaluation.query_paths[:30]:
        shutil.copy(p, copied / f"copy-{p.name}")
    calib = _quiet_build(copied, 30, format="images")
    with pytest.raises(CalibrationOverlapError, match="30 calibration image.* same decoded pixels"):
        check_not_eval(calib, evaluation)


def test_reencoded_and_repeated_eval_images_are_refused(nordland_dir: Path, tmp_path: Path) -> None:
    """Other bytes, same pixels (PNG re-compressed, BMP), and the same image twice: still the evaluation's."""
    from PIL import Image

    evaluation = read_benchmark(nordland_dir, format="aligned", frames="25000:")
    folder = tmp_path / "reencoded"
    folder.mkdir()
    real = [p for p in evaluation.query_paths if p.stat().st_size > 200][:6]
    for i, p in enumerate(real):
        im = Image.open(p).convert("RGB")
        im.save(folder / f"a{i}.png", compress_level=1)
        im.save(folder / f"b{i}.bmp")  # each one twice: repeats are not excused
    calib = _quiet_build(folder, 12, format="images")
    assert calib.source["repeated_content"] == 6
    assert {h for h in calib.sha256}.isdisjoint({file_sha256(p) for p in real})  # no byte-identical file
    with pytest.raises(CalibrationOverlapError, match="12 calibration image.* same decoded pixels"):
        check_not_eval(calib, evaluation)
    with pytest.warns(RepeatedCalibrationImagesWarning, match="6 calibration images repeat"):
        build_calibration_set(folder, 12, format="images")


def test_repeated_blank_training_frames_are_no_leak(nordland_dir: Path) -> None:
    """All training frames, the 17 identical blank ones included, against the evaluation split: no leak,
    and the blanks are counted as repeated content (16 repeats of one image)."""
    evaluation = read_benchmark(nordland_dir, format="aligned", frames="25000:")
    calib = _quiet_build(nordland_dir / "summer", 5000, format="images")
    train = [p for p, d in zip(calib.paths, calib.pixel_digests(), strict=True) if int(p.stem[-5:]) < 25000]
    blank = [p for p in train if p.stat().st_size < 200]
    assert len(blank) == 17
    subset = calibration_set_from_paths(train)
    check_not_eval(subset, evaluation)  # passes
    assert calib.source["repeated_content"] >= 16


def test_cli_calibrate(nordland_dir: Path, tmp_path: Path) -> None:
    from boq_edge.cli import _load_commands, app

    _load_commands()
    runner = CliRunner()
    out = tmp_path / "calib.json"
    res = runner.invoke(app, ["calibrate", "--data", str(nordland_dir), "-n", "16", "-o", str(out),
                              "--frames", ":25000", "--eval-data", str(nordland_dir), "--eval-frames", "25000:"])
    assert res.exit_code == 0, res.output
    assert "fewer than 300" in res.output and out.is_file()
    assert json.loads(out.read_text())["source"]["leak_check"][0]["benchmark"]
    unchecked = runner.invoke(app, ["calibrate", "--data", str(nordland_dir), "-n", "16", "-o",
                                    str(tmp_path / "u.json"), "--frames", ":25000"])
    assert unchecked.exit_code == 0 and "no leak check" in unchecked.output
    assert json.loads((tmp_path / "u.json").read_text())["source"]["leak_check"] is None
    bad = runner.invoke(app, ["calibrate", "--data", str(nordland_dir), "-n", "16", "-o", str(tmp_path / "x.json"),
                              "--eval-data", str(nordland_dir), "--eval-frames", "25000:"])
    assert bad.exit_code != 0
    assert "overlap the evaluation frames" in bad.output
    assert not (tmp_path / "x.json").exists()


@pytest.mark.parametrize("edit,message", [
    (lambda d: d.pop("root"), "has no root folder"),
    (lambda d: d.update(images="a.png"), "lists no images"),
    (lambda d: d["images"][0].pop("sha256"), "image entry 0 is not a {path, sha256} record"),
    (lambda d: d.update(source=5), "malformed source"),
])
def test_malformed_manifests_are_one_line_errors(nordland_dir: Path, tmp_path: Path, edit, message: str) -> None:  # noqa: ANN001
    calib = save_calibration_set(_quiet_build(nordland_dir, 4, format="aligned", options={"frames": ":25000"}),
                                 tmp_path / "c.json")
    d = json.loads(calib.manifest_path.read_text())
    edit(d)
    calib.manifest_path.write_text(json.dumps(d))
    with pytest.raises(CalibrationError, match=re.escape(message)):
        load_calibration_set(calib.manifest_path)
