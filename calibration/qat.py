"""Quantization-aware tuning: NNCF fake-quantization of the folded model + label-free distillation.

PTQ picks scales from statistics and leaves the weights where FP32 training put them;
some layers (here: the high-resolution first convolutions of MobileNetV2) then lose more
than the accuracy budget. Tuning lets weights and scales adapt to INT8 rounding. No labels
are needed: the FP32 model is the teacher and the INT8 student is pulled towards the
teacher's descriptors — cosine distance, plus optionally a ranking term that matches the
two models' in-batch similarity matrices (what retrieval actually uses). Images are the
calibration set, so no evaluation data is ever seen.

Details that matter, measured:
- BatchNorm is frozen (eval statistics, affine parameters fixed). Left in train mode the
  running statistics drift on a few hundred images and descriptor cosine to FP32 fell to
  0.906 in 3 steps.
- The folded model is what NNCF can quantize: cross-attention as explicit Linear + SDPA.
- ``signed_activations=True`` (TensorRT's rule) turns NNCF's unsigned activation
  quantizers into signed ones *before* tuning, so the student learns under the rounding it
  will be exported with; the Q/DQ export is then all int8 with zero-point 0.
- ImageNet MobileNetV2 weights carry subnormal BatchNorm statistics; in torch eager on CPU
  they made every forward ~300× slower. The working copies here flush them to zero
  (value change below 1e-38).
- Export: one Q/DQ ONNX (NNCF's ``ONNX_QUANTIZE_DEQUANTIZE_PAIRS`` mode with the
  TorchScript exporter, the TensorRT placement pass of :mod:`qdq_tensorrt`, weights stored
  as int8), which OpenVINO then reads (Q/DQ become FakeQuantize), so both targets run the
  same student. With full-range 8-bit weights OpenVINO's integer kernels saturated on this
  AVX2-only CPU (cosine 0.04 to FP32, while ONNX Runtime ran the same file at R@1 43.8 vs
  45.3 FP32 on Nordland); hence the overflow fix in :func:`quantize_torch`.
"""

from __future__ import annotations

import contextlib
import copy
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# The QAT student is exported by the TorchScript exporter: NNCF's Q/DQ export mode hooks into it.
QAT_OPSET = 17
QAT_EXPORTER = ("torch.onnx.export(dynamo=False) (TorchScript) of the NNCF QAT student, Q/DQ placement and "
                "int8 weights by boq-edge")


@dataclass
class QATResult:
    model: Any  # NNCF-quantized torch module (fake-quant)
    epochs: int
    signed_activations: bool
    history: list[float] = field(default_factory=list)  # mean loss per epoch
    num_quantizers: int = 0


def flush_subnormals(model: Any) -> int:
    """Zero subnormal float parameters/buffers in place; returns how many were changed."""
    import torch

    tiny = torch.finfo(torch.float32).tiny
    n = 0
    with torch.no_grad():
        for t in [*model.parameters(), *model.buffers()]:
            if t.is_floating_point():
                mask = (t != 0) & (t.abs() < tiny)
                k = int(mask.sum())
                if k:
                    t[mask] = 0
                    n += k
    return n


@contextlib.contextmanager
def flush_denormals() -> Iterator[None]:
    """CPU flush-to-zero for the duration: fake-quant tuning otherwise slows down as values go subnormal."""
    import torch

    enabled = torch.set_flush_denormal(True)
    try:
        yield
    finally:
        if enabled:
            torch.set_flush_denormal(False)


def _quantizers(model: Any) -> list[Any]:
    from nncf.torch.quantization.layers import BaseQuantizer

    return [m for m in model.modules() if isinstance(m, BaseQuantizer)]


def _freeze_batchnorm(model: Any) -> None:
    import torch

    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eval()
            for p in m.parameters():
                p.requires_grad_(False)


_NNCF_WEIGHTED = ("conv2d", "conv1d", "conv3d", "linear", "matmul", "addmm", "conv_transpose2d")


def nncf_names_for_onnx_nodes(folded: Any, example: np.ndarray, onnx_model: Any, names: Sequence[str]) -> list[str]:
    """NNCF's names for the torch layers behind these ONNX nodes of the same model's export.

    Float placement is decided once, on the FP32 ONNX (:mod:`boq_edge.calibration.graph`);
    QAT must leave the same layers in float. The torch exporter records each ONNX node's
    module scope (``pkg.torch.onnx.name_scopes``); NNCF names nodes by module path
    (``backbone/features/1/conv/0/0/conv2d/0``). A Conv fused with its BatchNorm carries
    the BatchNorm's scope, so a BatchNorm match is followed back to the layer feeding it.
    Raises ``ValueError`` naming any node that cannot be mapped, rather than quantizing a
    layer the FP32 analysis said must stay float.
    """
    import ast

    import torch
    from nncf.torch.function_hook.nncf_graph.nncf_graph_builder import build_nncf_graph

    graph = build_nncf_graph(folded, torch.from_numpy(np.ascontiguousarray(example[:1], dtype=np.float32)))
    nodes = list(graph.get_all_nodes())
    by_node = {n.name: n for n in onnx_model.graph.node}
    out: list[str] = []
    for name in names:
        meta = {p.key: p.value for p in by_node[name].metadata_props} if name in by_node else {}
        scopes = ast.literal_eval(meta.get("pkg.torch.onnx.name_scopes", "[]"))
        if len(scopes) < 2:
            raise ValueError(f"ONNX node {name!r} has no torch module scope; cannot keep its layer in float for QAT")
        prefix = scopes[-2].replace(".", "/") + "/"
        found = [n for n in nodes if n.node_name.startswith(prefix) and n.node_type in _NNCF_WEIGHTED]
        if not found:  # a BatchNorm folded into the Conv before it
            for bn in (n for n in nodes if n.node_name.startswith(prefix)):
                found += [p for p in graph.get_previous_nodes(bn) if p.node_type in _NNCF_WEIGHTED]
        if not found:
            raise ValueError(f"no torch layer found for ONNX node {name!r} (module {scopes[-2]!r})")
        out += [n.node_name for n in found if n.node_name not in out]
    return out


def quantize_torch(folded: Any, calibration: np.ndarray, *, signed_activations: bool,
                   subset_size: int | None = None, float_layers: Sequence[str] = ()) -> Any:
    """NNCF PTQ of a copy of the folded model (the starting point of tuning).

    ``float_layers`` are NNCF node names left unquantized (:func:`nncf_names_for_onnx_nodes`).
    """
    import nncf
    import torch
    from boq_edge.calibration.ptq_openvino import quiet_nncf
    from nncf.quantization.advanced_parameters import (
        AdvancedQuantizationParameters,
        OverflowFix,
        QuantizationParameters,
    )

    quiet_nncf()
    # NNCF compiles its CPU fake-quant kernels on first use and gives up after 60 s by default; on a
    # busy 2-core machine the compile took longer and QAT failed (ExtensionLoaderTimeoutException).
    os.environ.setdefault("NNCF_EXTENSION_LOAD_TIMEOUT", "900")
    student = copy.deepcopy(folded).eval()
    flush_subnormals(student)
    data = torch.from_numpy(np.ascontiguousarray(calibration, dtype=np.float32))
    ds = nncf.Dataset([data[i : i + 1] for i in range(len(data))])
    # Bias correction is skipped: on torch it costs minutes of CPU, and tuning corrects biases anyway.
    # Activations per tensor: NNCF's CPU config otherwise quantizes depthwise-conv inputs per
    # channel, which TensorRT's explicit Q/DQ rules (and lint-qdq) do not allow.
    # Overflow fix on every layer (7-bit weight range), as for OpenVINO PTQ: OpenVINO runs the
    # student's Q/DQ with integer kernels that saturate on CPUs without VNNI (measured here:
    # full-range QAT weights gave cosine 0.04 in OpenVINO while ONNX Runtime ran them fine).
    adv = AdvancedQuantizationParameters(disable_bias_correction=True, overflow_fix=OverflowFix.ENABLE,
                                         activations_quantization_params=QuantizationParameters(per_channel=False))
    with flush_denormals():
        scope = nncf.IgnoredScope(names=list(float_layers)) if float_layers else None
        q = nncf.quantize(student, ds, subset_size=subset_size or len(data), advanced_parameters=adv,
                          ignored_scope=scope)
    if signed_activations:
        for m in _quantizers(q):
            if not m.signed:
                m.signed = True
    return q


def distill(
    student: Any,
    teacher: Any,
    images: np.ndarray,
    *,
    epochs: int,
    lr: float = 1e-5,
    scale_lr: float = 1e-4,
    batch_size: int = 32,
    ranking_weight: float = 0.0,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> list[float]:
    """Tune ``student`` (in place) towards ``teacher``'s descriptors on ``images``."""
    import torch

    g = torch.Generator().manual_seed(seed)
    x_all = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
    teacher = teacher.eval()
    with torch.no_grad():
        targets = torch.cat([teacher(x_all[i : i + 64]) for i in range(0, len(x_all), 64)])
    quant_params = {id(p) for m in _quantizers(student) for p in m.parameters()}
    weights: list[Any] = []
    scales: list[Any] = []
    for p in student.parameters():
        if not p.dtype.is_floating_point:
            continue
        p.requires_grad_(True)
        (scales if id(p) in quant_params else weights).append(p)
    _freeze_batchnorm(student)
    weights = [p for p in weights if p.requires_grad]
    opt = torch.optim.Adam([{"params": weights, "lr": lr}, {"params": scales, "lr": scale_lr}])
    history: list[float] = []
    with flush_denormals():
        _run_epochs(student, x_all, targets, opt, g, epochs, batch_size, ranking_weight, history, log)
    student.eval()
    for p in student.parameters():
        p.requires_grad_(False)
    return history


def _run_epochs(student: Any, x_all: Any, targets: Any, opt: Any, g: Any, epochs: int, batch_size: int,
                ranking_weight: float, history: list[float], log: Callable[[str], None] | None) -> None:
    import torch
    import torch.nn.functional as F

    for ep in range(epochs):
        student.eval()  # BatchNorm frozen; quantizers and weights still receive gradients
        perm = torch.randperm(len(x_all), generator=g)
        total = 0.0
        for i in range(0, len(perm), batch_size):
            idx = perm[i : i + batch_size]
            s = student(x_all[idx])
            t = targets[idx]
            loss = (1 - F.cosine_similarity(s, t, dim=1)).mean()
            if ranking_weight > 0 and len(idx) > 1:
                loss = loss + ranking_weight * F.mse_loss(s @ s.T, t @ t.T)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss) * len(idx)
        history.append(total / len(x_all))
        if log:
            log(f"QAT epoch {ep + 1}/{epochs}: distillation loss {history[-1]:.5f}")


def quantization_aware_tune(
    folded: Any,
    calibration: np.ndarray,
    *,
    epochs: int,
    signed_activations: bool = True,
    ranking_weight: float = 0.0,
    seed: int = 0,
    float_layers: Sequence[str] = (),
    log: Callable[[str], None] | None = None,
    **distill_kwargs: Any,
) -> QATResult:
    """PTQ start + ``epochs`` of distillation; the FP32 ``folded`` model is left untouched.

    ``float_layers``: NNCF node names to keep in float (see :func:`nncf_names_for_onnx_nodes`).
    """
    import torch

    torch.manual_seed(seed)
    teacher = copy.deepcopy(folded).eval()
    flush_subnormals(teacher)
    student = quantize_torch(folded, calibration, signed_activations=signed_activations, float_layers=float_layers)
    hist = distill(student, teacher, calibration, epochs=epochs, ranking_weight=ranking_weight, seed=seed,
                   log=log, **distill_kwargs) if epochs > 0 else []
    return QATResult(student, epochs, signed_activations, hist, len(_quantizers(student)))


def export_qdq_onnx(student: Any, example: np.ndarray, path: str | os.PathLike, *,
                    input_name: str = "images", output_name: str = "descriptors") -> Any:
    """The tuned student as a Q/DQ ONNX model (TensorRT placement enforced); returns the ModelProto."""
    import tempfile
    from pathlib import Path

    import onnx
    import torch
    from boq_edge.calibration.ptq_onnx import save_int8_onnx
    from boq_edge.calibration.qdq_tensorrt import enforce_tensorrt_placement, fold_weight_quantizers
    from boq_edge.export.onnx_graph import ensure_node_names
    from nncf.torch.quantization.layers import QuantizerExportMode

    qs = _quantizers(student)
    for m in qs:
        m.set_export_mode(QuantizerExportMode.ONNX_QUANTIZE_DEQUANTIZE_PAIRS)
    try:
        with tempfile.TemporaryDirectory(prefix="boq-qat-") as tmp, torch.no_grad():
            tmp_path = Path(tmp) / "qat.onnx"
            torch.onnx.export(student, (torch.from_numpy(example[:1]),), str(tmp_path), dynamo=False,
                              opset_version=QAT_OPSET, input_names=[input_name], output_names=[output_name],
                              dynamic_axes={input_name: {0: "batch"}, output_name: {0: "batch"}})
            model = onnx.load(str(tmp_path))
    finally:
        for m in qs:
            m.set_export_mode(QuantizerExportMode.FAKE_QUANTIZE)
    ensure_node_names(model)
    model = fold_weight_quantizers(enforce_tensorrt_placement(model))
    save_int8_onnx(model, path)
    return model


__all__ = ["QAT_EXPORTER", "QAT_OPSET", "QATResult", "distill", "export_qdq_onnx", "flush_subnormals",
           "nncf_names_for_onnx_nodes",
           "quantization_aware_tune", "quantize_torch"]
