"""Fold BoQ's image-independent computation into constants for deployment.

In every BoQ block, ``norm_q(Q + SelfAttn(Q))`` depends on weights only: the official
code even notes it can be cached at inference. Folding replaces the queries, the query
self-attention and ``norm_q`` with one constant, and writes the cross-attention as
explicit Linear projections + ``scaled_dot_product_attention`` whose query side (the
constant times the query projection, already split into heads) is folded in too.
The Transformer encoder is written the same explicit way. Besides removing work, this
is what makes the model quantizable: NNCF cannot place quantizers on
``nn.MultiheadAttention`` when queries differ from keys, and an exported graph of plain
MatMul/Softmax is what TensorRT's explicit-precision rules and OpenVINO's INT8 fusions
understand. For DINOv2 the interpolated position embedding for the export size is
folded as well, so no bicubic resize of constants is left in the graph.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from boq_edge.model.boq import BoQ, BoQBlock
from boq_edge.model.dinov2 import PATCH, DinoV2Backbone
from boq_edge.model.vpr import VPRModel


def _split_in_proj(mha: nn.MultiheadAttention) -> tuple[nn.Linear, nn.Linear, nn.Linear]:
    d = mha.embed_dim
    w, b = mha.in_proj_weight.detach(), mha.in_proj_bias.detach()
    out = []
    for i in range(3):
        lin = nn.Linear(d, d)
        lin.weight.data.copy_(w[i * d:(i + 1) * d])
        lin.bias.data.copy_(b[i * d:(i + 1) * d])
        out.append(lin)
    return out[0], out[1], out[2]


def _copy_linear(src: nn.Linear) -> nn.Linear:
    lin = nn.Linear(src.in_features, src.out_features, bias=src.bias is not None)
    lin.load_state_dict(src.state_dict())
    return lin


class ExplicitEncoderLayer(nn.Module):
    """``nn.TransformerEncoderLayer`` (post-norm, ReLU, no dropout) as plain ops."""

    def __init__(self, layer: nn.TransformerEncoderLayer) -> None:
        super().__init__()
        if layer.norm_first:
            raise ValueError("only post-norm encoder layers (norm_first=False) are folded")
        attn = layer.self_attn
        self.heads = attn.num_heads
        self.q_proj, self.k_proj, self.v_proj = _split_in_proj(attn)
        self.out_proj = _copy_linear(attn.out_proj)
        self.norm1 = copy.deepcopy(layer.norm1)
        self.linear1 = _copy_linear(layer.linear1)
        self.linear2 = _copy_linear(layer.linear2)
        self.norm2 = copy.deepcopy(layer.norm2)

    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        b, n, d = t.shape
        return t.reshape(b, n, self.heads, d // self.heads).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        a = F.scaled_dot_product_attention(
            self._heads(self.q_proj(x)), self._heads(self.k_proj(x)), self._heads(self.v_proj(x)))
        x = self.norm1(x + self.out_proj(a.transpose(1, 2).reshape(b, n, d)))
        return self.norm2(x + self.linear2(F.relu(self.linear1(x))))


class FoldedBoQBlock(nn.Module):
    """A BoQ block whose queries side is one constant: (1, heads, M, head_dim)."""

    query_const: torch.Tensor

    def __init__(self, block: BoQBlock) -> None:
        super().__init__()
        self.encoder = ExplicitEncoderLayer(block.encoder)
        cross = block.cross_attn
        self.heads = cross.num_heads
        q_proj, self.k_proj, self.v_proj = _split_in_proj(cross)
        with torch.no_grad():
            q = q_proj(block.learned_queries())  # (1, M, d)
            m, d = q.shape[1], q.shape[2]
            q = q.reshape(1, m, self.heads, d // self.heads).transpose(1, 2).contiguous()
        self.register_buffer("query_const", q)
        self.out_proj = _copy_linear(cross.out_proj)
        self.norm_out = copy.deepcopy(block.norm_out)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.encoder(x)
        b, n, d = x.shape
        k = self.k_proj(x).reshape(b, n, self.heads, d // self.heads).transpose(1, 2)
        v = self.v_proj(x).reshape(b, n, self.heads, d // self.heads).transpose(1, 2)
        q = self.query_const.expand(b, -1, -1, -1)
        out = F.scaled_dot_product_attention(q, k, v)
        out = out.transpose(1, 2).reshape(b, -1, d)
        return x, self.norm_out(self.out_proj(out))


class FoldedBoQ(nn.Module):
    def __init__(self, agg: BoQ) -> None:
        super().__init__()
        self.proj_c = copy.deepcopy(agg.proj_c)
        self.norm_input = copy.deepcopy(agg.norm_input)
        self.boqs = nn.ModuleList(FoldedBoQBlock(b) for b in agg.boqs if isinstance(b, BoQBlock))
        self.fc = _copy_linear(agg.fc)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm_input(self.proj_c(x).flatten(2).transpose(1, 2))
        outs = []
        for block in self.boqs:
            x, out = block(x)
            outs.append(out)
        out = self.fc(torch.cat(outs, dim=1).transpose(1, 2)).flatten(1)
        return F.normalize(out, p=2.0, dim=-1)


class FoldedDinoV2(nn.Module):
    """DINOv2 with the position embedding for one input size stored as a constant."""

    pos_const: torch.Tensor

    def __init__(self, bb: DinoV2Backbone, image_size: tuple[int, int]) -> None:
        super().__init__()
        h, w = image_size
        if h % PATCH or w % PATCH:
            raise ValueError(f"DINOv2 export size {h}x{w} is not a multiple of {PATCH}")
        self.inner = copy.deepcopy(bb)
        with torch.no_grad():
            pos = bb.dino.interpolate_pos_encoding(h // PATCH, w // PATCH).detach().clone()
        self.register_buffer("pos_const", pos)
        self.image_size = (h, w)
        # Unused at inference; dropped so they are not exported or counted.
        del self.inner.dino.pos_embed, self.inner.dino.mask_token, self.inner.dino.norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) != self.image_size:
            raise ValueError(f"this folded model takes {self.image_size} inputs, got {tuple(x.shape[-2:])}")
        return self.inner(x, self.pos_const)


class FoldedVPRModel(nn.Module):
    """The deploy model: same descriptors as the training model, fewer ops, no MHA modules."""

    def __init__(self, model: VPRModel, image_size: tuple[int, int] | None = None) -> None:
        super().__init__()
        self.config = model.config if image_size is None else model.config.with_image_size(*image_size)
        bb = model.backbone
        if isinstance(bb, DinoV2Backbone):
            self.backbone: nn.Module = FoldedDinoV2(bb, self.config.image_size)
        else:
            self.backbone = copy.deepcopy(bb)
        self.aggregator = FoldedBoQ(model.aggregator)
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
