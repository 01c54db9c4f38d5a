"""Odd images decode to the pixels a person sees: 16-bit, float, 48-bit RGB, bilevel, palette, EXIF rotation;
a decompression bomb is a named CorruptImageError (skipped and counted under --skip-corrupt)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from boq_edge.preprocess import CorruptImageError, Preprocessing, load_image, preprocess_batch


def _gradient(h: int = 24, w: int = 32) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([(x * 255 // (w - 1)), (y * 255 // (h - 1)), ((x + y) * 255 // (w + h - 2))], -1).astype(np.uint8)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _png(path: Path, width: int, height: int, bit_depth: int, color_type: int, raw_rows: bytes | None) -> Path:
    """A PNG written by hand: 48-bit RGB (which PIL cannot write) or just a header (a bomb)."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    body = _png_chunk(b"IDAT", zlib.compress(raw_rows)) if raw_rows is not None else b""
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + body + _png_chunk(b"IEND", b""))
    return path


def test_16_bit_grey_matches_its_8_bit_version(tmp_path: Path) -> None:
    g8 = _gradient()[..., 0]
    Image.fromarray(g8.astype(np.uint16) * 257).save(tmp_path / "g16.png")  # I;16, full 16-bit range
    Image.fromarray(g8).save(tmp_path / "g8.png")
    a, b = np.asarray(load_image(tmp_path / "g16.png")), np.asarray(load_image(tmp_path / "g8.png"))
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    assert np.abs(a.astype(int) - b).max() <= 1  # was all white (255) before: PIL clips 16-bit to 8


def test_48_bit_rgb_matches_its_8_bit_version(tmp_path: Path) -> None:
    rgb8 = _gradient()
    rgb16 = (rgb8.astype(">u2") * 257)
    rows = b"".join(b"\x00" + rgb16[r].tobytes() for r in range(rgb16.shape[0]))
    _png(tmp_path / "rgb48.png", rgb8.shape[1], rgb8.shape[0], 16, 2, rows)
    a = np.asarray(load_image(tmp_path / "rgb48.png"))
    assert np.abs(a.astype(int) - rgb8).max() <= 1


def test_float_image_in_0_1_and_other_ranges(tmp_path: Path) -> None:
    g8 = _gradient()[..., 1]
    Image.fromarray(g8.astype(np.float32) / 255).save(tmp_path / "f.tiff")
    a = np.asarray(load_image(tmp_path / "f.tiff"))
    assert np.abs(a[..., 0].astype(int) - g8).max() <= 1  # was near black before
    Image.fromarray(g8.astype(np.float32) * 40 - 3000).save(tmp_path / "f2.tiff")  # arbitrary range: stretched
    b = np.asarray(load_image(tmp_path / "f2.tiff"))[..., 0]
    assert b.min() == 0 and b.max() == 255


def test_bilevel_palette_and_alpha(tmp_path: Path) -> None:
    Image.fromarray(_gradient()[..., 0] > 127).save(tmp_path / "b.png")
    assert set(np.unique(np.asarray(load_image(tmp_path / "b.png")))) == {0, 255}
    pal = Image.fromarray(_gradient()).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    pal.info["transparency"] = 0
    pal.save(tmp_path / "p.png", transparency=0)
    assert np.asarray(load_image(tmp_path / "p.png")).shape == (24, 32, 3)
    Image.fromarray(_gradient()[..., 0]).convert("LA").save(tmp_path / "la.png")
    assert np.asarray(load_image(tmp_path / "la.png")).shape == (24, 32, 3)


def test_exif_orientation_is_applied_and_can_be_switched_off(tmp_path: Path) -> None:
    upright = Image.fromarray(_gradient(32, 48))
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # what a sideways camera writes
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90° clockwise to display
    stored.save(tmp_path / "side.jpg", exif=exif, quality=95)
    shown = np.asarray(load_image(tmp_path / "side.jpg")).astype(int)
    assert shown.shape == np.asarray(upright).shape
    assert np.abs(shown - np.asarray(upright)).mean() < 4  # JPEG noise only
    raw = np.asarray(load_image(tmp_path / "side.jpg", exif_orientation=False))
    assert raw.shape == np.asarray(stored).shape
    spec = Preprocessing(32, 48)
    on = preprocess_batch([tmp_path / "side.jpg"], spec)
    off = preprocess_batch([tmp_path / "side.jpg"], Preprocessing(32, 48, exif_orientation=False))
    assert not np.allclose(on, off)
    assert Preprocessing.from_dict({**spec.to_dict(), "exif_orientation": False}).exif_orientation is False


def test_decompression_bomb_is_a_named_corrupt_image(tmp_path: Path) -> None:
    bomb = _png(tmp_path / "bomb.png", 12000, 8000, 8, 2, None)  # 96 megapixels claimed by a 60-byte file
    with pytest.raises(CorruptImageError, match=r"bomb.png.*96 megapixels, over the 80-megapixel limit"):
        load_image(bomb)
    huge = _png(tmp_path / "huge.png", 20000, 20000, 8, 2, None)  # 400 MP: PIL itself refuses it, still named
    with pytest.raises(CorruptImageError, match=r"huge.png.*decompression bomb"):
        load_image(huge)


def test_bomb_in_embed_and_eval_skip_corrupt(tmp_path: Path, tiny_checkpoint: Path, write_image) -> None:
    from boq_edge.export.api import export_model
    from boq_edge.export.options import ExportOptions
    from typer.testing import CliRunner

    from boq_edge.cli import _load_commands, app

    _load_commands()
    runner = CliRunner()
    bundle = export_model(tiny_checkpoint, tmp_path / "b", ExportOptions("onnx"))
    imgs = tmp_path / "imgs"
    [write_image(imgs / f"{i}.png", seed=i) for i in range(3)]
    _png(imgs / "zz-bomb.png", 20000, 20000, 8, 2, None)
    r = runner.invoke(app, ["embed", str(bundle), str(imgs), "-o", str(tmp_path / "d.npy")])
    assert r.exit_code == 2 and "zz-bomb.png" in r.output and "decompression bomb" in r.output
    assert r.exception is None or isinstance(r.exception, SystemExit)
    # a VPR-folder benchmark whose one database image is a bomb: skipped and counted, not a traceback
    root = tmp_path / "bench"
    for split, n in (("database", 3), ("queries", 2)):
        for i in range(n):
            write_image(root / split / f"@0@{i * 5}@@.png", seed=10 + i, size=(32, 32))
    _png(root / "database" / "@0@99@@.png", 20000, 20000, 8, 2, None)
    r = runner.invoke(app, ["eval", str(tiny_checkpoint), "-d", str(root), "--skip-corrupt", "--no-cache",
                            "--no-progress", "-j", "0", "-o", str(tmp_path / "e.json")])
    assert r.exit_code == 0, r.output
    import json

    report = json.loads((tmp_path / "e.json").read_text())
    assert [s["path"].endswith("@0@99@@.png") for s in report["skipped"]["database"]] == [True]

