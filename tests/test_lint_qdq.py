"""lint-qdq on small hand-built Q/DQ models: the compliant one passes, each broken rule fails naming its node."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from boq_edge.calibration.lint_qdq import lint_file, lint_model
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

C_IN, C_OUT = 4, 6


def _model(*, act_dtype: int = TensorProto.INT8, act_zp: int = 0, per_channel: bool = True,
           weight_axis: int = 0, dq_into_add: bool = False, weight_dq: bool = True,
           weight_pair: bool = False) -> onnx.ModelProto:
    """x → Q/DQ → Conv(DQ weights) → Relu → Q/DQ → MatMul(DQ weights) → y, plus a residual Add.

    ``weight_pair``: the Conv weight is a float constant → QuantizeLinear → DequantizeLinear
    (the QAT exporters' form) instead of an int8 constant → DequantizeLinear (ONNX Runtime's).
    """
    rng = np.random.default_rng(0)
    np_act = {TensorProto.INT8: np.int8, TensorProto.UINT8: np.uint8}[act_dtype]
    w = rng.integers(-127, 127, size=(C_OUT, C_IN, 3, 3)).astype(np.int8)
    w_scale = np.full(C_OUT if per_channel else 1, 0.01, np.float32)
    if not per_channel:
        w_scale = np.float32(0.01)
    mw = rng.integers(-127, 127, size=(C_OUT, 5)).astype(np.int8)  # MatMul weight (K, N): axis 1 is output
    inits = [
        numpy_helper.from_array(np.float32(0.02), "x_scale"),
        numpy_helper.from_array(np.array(act_zp, dtype=np_act), "x_zp"),
        numpy_helper.from_array(w, "w_q"),
        numpy_helper.from_array(np.asarray(w_scale, np.float32), "w_scale"),
        numpy_helper.from_array(np.zeros(np.asarray(w_scale).shape, np.int8), "w_zp"),
        numpy_helper.from_array(np.float32(0.05), "h_scale"),
        numpy_helper.from_array(np.array(0, dtype=np.int8), "h_zp"),
        numpy_helper.from_array(mw, "mw_q"),
        numpy_helper.from_array(np.full(5, 0.01, np.float32), "mw_scale"),
        numpy_helper.from_array(np.zeros(5, np.int8), "mw_zp"),
        numpy_helper.from_array(np.ones((1, 5), np.float32), "bias"),
        numpy_helper.from_array(np.array([1, C_OUT], np.int64), "shape"),
        numpy_helper.from_array(rng.standard_normal((C_OUT, C_IN, 3, 3)).astype(np.float32), "w_float"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zp"], ["xq"], name="x_Q"),
        helper.make_node("DequantizeLinear", ["xq", "x_scale", "x_zp"], ["xdq"], name="x_DQ"),
    ]
    if weight_pair:
        nodes += [helper.make_node("QuantizeLinear", ["w_float", "w_scale", "w_zp"], ["w_q2"], name="conv_w_Q",
                                   axis=weight_axis),
                  helper.make_node("DequantizeLinear", ["w_q2", "w_scale", "w_zp"], ["w"], name="conv_w_DQ",
                                   axis=weight_axis)]
    elif weight_dq:
        nodes.append(helper.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zp"], ["w"], name="conv_w_DQ",
                                      axis=weight_axis))
    nodes += [
        helper.make_node("Conv", ["xdq", "w" if weight_dq else "w_float"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("GlobalAveragePool", ["r"], ["m"], name="pool"),
        helper.make_node("Reshape", ["m", "shape"], ["m2"], name="flatten"),
        helper.make_node("QuantizeLinear", ["m2", "h_scale", "h_zp"], ["mq"], name="h_Q"),
        helper.make_node("DequantizeLinear", ["mq", "h_scale", "h_zp"], ["mdq"], name="h_DQ"),
        helper.make_node("DequantizeLinear", ["mw_q", "mw_scale", "mw_zp"], ["mw"], name="fc_w_DQ", axis=1),
        helper.make_node("MatMul", ["mdq", "mw"], ["fc"], name="fc"),
        helper.make_node("Add", ["fc", "bias"], ["y"], name="fc_bias"),
    ]
    if dq_into_add:  # a residual add reading the dequantized tensor instead of the float one
        nodes.append(helper.make_node("Add", ["mdq", "m2"], ["res"], name="residual_add"))
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])]
    if dq_into_add:
        outputs.append(helper.make_tensor_value_info("res", TensorProto.FLOAT, [1, C_OUT]))
    graph = helper.make_graph(nodes, "qdq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, C_IN, 8, 8])],
                              outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    onnx.checker.check_model(model)
    return model


def _rules(model: onnx.ModelProto) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for v in lint_model(model).violations:
        out.setdefault(v.rule, set()).add(v.node)
    return out


def test_compliant_model_passes_and_runs(tmp_path: Path) -> None:
    import onnxruntime as ort

    model = _model()
    report = lint_model(model)
    assert report.ok, [str(v) for v in report.violations]
    assert sorted(report.quantized_nodes) == ["conv", "fc"]
    p = tmp_path / "ok.onnx"
    onnx.save(model, str(p))
    y = ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(
        None, {"x": np.ones((1, C_IN, 8, 8), np.float32)})[0]
    assert y.shape == (1, 5)


def test_weight_qdq_pairs_are_weights_not_activations() -> None:
    """QAT exports quantize float weights with a Q/DQ pair: per-channel there is fine, per-tensor is not."""
    report = lint_model(_model(weight_pair=True))
    assert report.ok, [str(v) for v in report.violations]
    assert _rules(_model(weight_pair=True, per_channel=False)) == {"weight-axis": {"conv_w_DQ"}}
    assert "conv_w_DQ" in _rules(_model(weight_pair=True, weight_axis=1))["weight-axis"]


def test_nonzero_zero_point_fails_naming_node() -> None:
    assert _rules(_model(act_zp=3)) == {"zero-point": {"x_Q", "x_DQ"}}


def test_uint8_activations_fail_naming_node() -> None:
    rules = _rules(_model(act_dtype=TensorProto.UINT8))
    assert rules == {"int8": {"x_Q", "x_DQ"}}


def test_per_tensor_weights_fail_naming_node() -> None:
    assert _rules(_model(per_channel=False)) == {"weight-axis": {"conv_w_DQ"}}


def test_weights_on_wrong_axis_fail() -> None:
    rules = _rules(_model(weight_axis=1))
    assert "conv_w_DQ" in rules["weight-axis"]


def test_dequantized_tensor_into_residual_add_fails() -> None:
    assert _rules(_model(dq_into_add=True)) == {"float-op": {"h_DQ"}}


def test_float_weights_on_quantized_conv_fail_coverage() -> None:
    assert _rules(_model(weight_dq=False)) == {"coverage": {"conv"}}


def test_cli_exit_codes_and_messages(tmp_path: Path) -> None:
    from boq_edge.cli import _load_commands, app

    _load_commands()
    good, bad = tmp_path / "good.onnx", tmp_path / "bad.onnx"
    onnx.save(_model(), str(good))
    onnx.save(_model(act_zp=5, per_channel=False), str(bad))
    runner = CliRunner()
    ok = runner.invoke(app, ["lint-qdq", str(good)])
    assert ok.exit_code == 0, ok.output
    assert "all rules hold" in ok.output
    res = runner.invoke(app, ["lint-qdq", str(bad)])
    assert res.exit_code == 1
    assert "x_Q (QuantizeLinear) [zero-point]" in res.output
    assert "conv_w_DQ (DequantizeLinear) [weight-axis]" in res.output
    missing = runner.invoke(app, ["lint-qdq", str(tmp_path / "nope.onnx")])
    assert missing.exit_code != 0


def test_lint_file_refuses_garbage(tmp_path: Path) -> None:
    p = tmp_path / "junk.onnx"
    p.write_bytes(b"not a protobuf at all" * 10)
    with pytest.raises(ValueError, match="not a readable ONNX model"):
        lint_file(p)


def test_weight_quantizers_fold_into_int8_constants(tmp_path: Path) -> None:
    """QAT's float-weight Q/DQ pairs become int8 constants: same outputs, lint-clean, no float weight left."""
    import onnxruntime as ort
    from boq_edge.calibration.qdq_tensorrt import fold_weight_quantizers

    x = {"x": np.random.default_rng(1).standard_normal((1, C_IN, 8, 8)).astype(np.float32)}
    paired = _model(weight_pair=True)
    outs = []
    for i, m in enumerate((paired, fold_weight_quantizers(_model(weight_pair=True)))):
        p = tmp_path / f"m{i}.onnx"
        onnx.save(m, str(p))
        outs.append(ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, x)[0])
    folded = fold_weight_quantizers(_model(weight_pair=True))
    assert np.array_equal(outs[0], outs[1])
    assert lint_model(folded).ok
    assert "conv_w_Q" not in {n.name for n in folded.graph.node}
    assert "w_float" not in {t.name for t in folded.graph.initializer}
    assert numpy_helper.to_array(next(t for t in folded.graph.initializer if t.name == "w_q2")).dtype == np.int8
