"""The device runtime imports and runs with torch unavailable (``import torch`` raises)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

pytest.importorskip("onnxruntime")

from boq_edge.export.api import export_model  # noqa: E402
from boq_edge.export.options import ExportOptions  # noqa: E402

from boq_edge.model import build_model, get_preset  # noqa: E402

DEVICE_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    try:
        import torch  # noqa: F401
        raise SystemExit("torch imported despite the block")
    except ImportError:
        pass
    from boq_edge.runtime import RuntimeUnavailable, load_runtime
    from boq_edge.export.bundle import read_manifest          # reading side of the bundle module
    from boq_edge.export.targets.tensorrt import tensorrt_status  # build-engine runs on torch-less devices
    bundle, images = sys.argv[1], sys.argv[2:]
    read_manifest(bundle)
    rt = load_runtime(bundle, threads=1)
    d = rt.embed(images)
    try:
        load_runtime(bundle, backend="torch", checkpoint="x.boq")
        torch_msg = None
    except RuntimeUnavailable as e:
        torch_msg = str(e)
    print(json.dumps({"shape": list(d.shape), "norms": np.linalg.norm(d, axis=1).tolist(),
                      "torch_loaded": any(m == "torch" or m.startswith("torch.") for m in sys.modules),
                      "torch_msg": torch_msg, "trt": tensorrt_status()[1]}))
""")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = build_model(get_preset("mobilenetv2-2048").with_image_size(64, 64))
    return export_model(model, tmp_path_factory.mktemp("nt") / "bundle", ExportOptions("onnx"))


def _run(block_torch: str, code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", block_torch + code, *args], capture_output=True, text=True,
                          timeout=300)


def test_runtime_without_torch(bundle: Path, nordland_dir: Path, block_torch: str) -> None:
    images = [str(p) for p in sorted((nordland_dir / "winter").glob("images-3*.png"))[:3]]
    r = _run(block_torch, DEVICE_SCRIPT, str(bundle), *images)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["shape"] == [3, 2048]
    assert all(abs(n - 1.0) < 1e-5 for n in out["norms"])
    assert out["torch_loaded"] is False
    assert "boq-edge[torch]" in out["torch_msg"]


def test_cli_embed_and_info_without_torch(bundle: Path, nordland_dir: Path, tmp_path: Path, block_torch: str) -> None:
    cli = "import sys\nfrom boq_edge.cli import main\nsys.argv = ['boq-edge', *sys.argv[1:]]\nmain()\n"
    out = tmp_path / "d.npy"
    image = nordland_dir / "winter" / "images-30000.png"
    r = _run(block_torch, cli, "embed", str(bundle), str(image), "--out", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    import numpy as np

    assert np.load(out).shape == (1, 2048)
    r = _run(block_torch, cli, "info", str(bundle))
    assert r.returncode == 0 and "verified" in r.stdout, r.stderr[-2000:]
