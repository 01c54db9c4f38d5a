from __future__ import annotations

from pathlib import Path

import pytest
import torch
from boq_edge.export.fold import fold, fold_report
from torch import nn

from boq_edge.model import PRESETS, build_model, get_preset
from boq_edge.preprocess import preprocess_batch

# Small inputs keep the big presets fast; folding does not depend on the input size.
SMALL = {"resnet50-16384": (64, 64), "dinov2-12288": (56, 70), "resnet18-4096": (64, 96), "mobilenetv2-2048": (64, 128)}


@pytest.fixture(scope="module")
def nordland_images(nordland_dir: Path) -> list[Path]:
    files = sorted((nordland_dir / "winter").glob("images-2*.png"))[:4]
    return files + [nordland_dir / "summer" / "images-00070.png"]  # one of the blank frames too


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_folded_matches_unfolded(preset: str, nordland_images: list[Path]) -> None:
    torch.manual_seed(0)
    config = get_preset(preset).with_image_size(*SMALL[preset])
    model = build_model(config)
    folded = fold(model)
    x_rand = torch.randn(3, 3, *config.image_size)
    x_real = torch.from_numpy(preprocess_batch(nordland_images, config.preprocessing))
    with torch.no_grad():
        for x in (x_rand, x_real):
            assert (model(x) - folded(x)).abs().max().item() <= 1e-5


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_folding_removes_query_branch(preset: str) -> None:
    model = build_model(get_preset(preset).with_image_size(*SMALL[preset]))
    folded = fold(model)
    names = [n for n, _ in folded.named_parameters()] + [n for n, _ in folded.named_buffers()]
    assert not any(s in n for n in names for s in (".queries", ".self_attn.", ".norm_q."))
    assert not any(isinstance(m, nn.MultiheadAttention) for m in folded.modules())
    rep = fold_report(model, folded)
    cfg = model.config
    d, m, L = cfg.proj_channels, cfg.num_queries, cfg.num_layers
    # per block: queries, self-attention (4d²+4d), norm_q (2d) and the cross-attention q projection (d²+d)
    expected = L * (m * d + 4 * d * d + 4 * d + 2 * d + d * d + d)
    if cfg.backbone.startswith("dinov2"):
        expected += 1370 * 768 + 768 + 2 * 768  # pos_embed, mask_token, final norm (unused at inference)
    assert rep.params_removed == expected
    assert rep.constants_added >= L * m * d


def test_fold_leaves_training_model_untouched() -> None:
    model = build_model(get_preset("mobilenetv2-edge").with_image_size(32, 64))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fold(model)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


def test_folded_dinov2_refuses_other_sizes() -> None:
    folded = fold(build_model(get_preset("dinov2-12288").with_image_size(28, 28)))
    with pytest.raises(ValueError, match="takes"):
        folded(torch.randn(1, 3, 42, 42))
