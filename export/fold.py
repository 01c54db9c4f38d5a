"""Fold a BoQ model's image-independent computation into constants for deployment.

The rewrites themselves are methods of the modules that own the weights (timm
``fuse()``-style): :meth:`boq_edge.model.boq.BoQ.fold` turns each block's
``norm_q(Q + SelfAttn(Q))`` into a constant and its attention into explicit ops, and each
backbone folds itself for one input size (:meth:`DinoV2Backbone.fold` stores the
interpolated position embedding). This module walks the model once and checks the result.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from boq_edge.model.vpr import VPRModel


class FoldedVPRModel(nn.Module):
    """The deploy model: same descriptors as the training model, fewer ops, no MHA modules."""

    def __init__(self, model: VPRModel, image_size: tuple[int, int] | None = None) -> None:
        super().__init__()
        self.config = model.config if image_size is None else model.config.with_image_size(*image_size)
        self.backbone: nn.Module = model.backbone.fold(self.config.image_size)
        self.aggregator = model.aggregator.fold()
        self.requires_grad_(False)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.aggregator(self.backbone(x))


@dataclass(frozen=True)
class FoldReport:
    params_before: int
    params_after: int
    constants_added: int
    max_abs_diff: float | None = None

    @property
    def params_removed(self) -> int:
        return self.params_before - self.params_after


def fold(model: VPRModel, image_size: tuple[int, int] | None = None) -> FoldedVPRModel:
    """Return the folded deploy model (the input model is left untouched)."""
    return FoldedVPRModel(model.eval(), image_size)


def fold_report(model: VPRModel, folded: FoldedVPRModel, inputs: torch.Tensor | None = None) -> FoldReport:
    """Parameter counts before/after, and max |Δ| of descriptors on ``inputs`` when given."""
    before = sum(p.numel() for p in model.parameters())
    after = sum(p.numel() for p in folded.parameters())
    consts = sum(b.numel() for n, b in folded.named_buffers() if n.endswith(("query_const", "pos_const")))
    diff = None
    if inputs is not None:
        with torch.no_grad():
            diff = float((model.eval()(inputs) - folded(inputs)).abs().max())
    return FoldReport(before, after, consts, diff)


def count_onnx_nodes(model: nn.Module, example: torch.Tensor) -> int:
    """Nodes of the exported ONNX graph (functions inlined), to show what folding removes."""
    import tempfile
    from pathlib import Path

    import onnx
    import onnx.inliner

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.onnx"
        torch.onnx.export(model, (example,), str(path), dynamo=True, opset_version=18, external_data=False)
        proto = onnx.inliner.inline_local_functions(onnx.load(str(path)))
    return len(proto.graph.node)


def folding_check(model: VPRModel, folded: FoldedVPRModel, images: str | None = None, max_images: int = 16,
                  onnx_nodes: bool = False) -> dict[str, float | int]:
    """max |Δ| of descriptors on random inputs (and real images), optionally ONNX node counts."""
    from pathlib import Path

    from boq_edge.preprocess import preprocess_batch

    h, w = folded.config.image_size
    results: dict[str, float | int] = {}
    rand = torch.randn(4, 3, h, w)
    with torch.no_grad():
        results["max |Δ| random inputs"] = float((model(rand) - folded(rand)).abs().max())
    if images is not None:
        exts = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}
        files = sorted(p for p in Path(images).rglob("*") if p.suffix.lower() in exts)[:max_images]
        if not files:
            raise FileNotFoundError(f"no images found under {images}")
        x = torch.from_numpy(preprocess_batch(files, folded.config.preprocessing))
        with torch.no_grad():
            results[f"max |Δ| {len(files)} real images"] = float((model(x) - folded(x)).abs().max())
    if onnx_nodes:
        ex = torch.randn(1, 3, h, w)
        results["ONNX nodes unfolded"] = count_onnx_nodes(model, ex)
        results["ONNX nodes folded"] = count_onnx_nodes(folded, ex)
    return results
