"""``boq-edge lint-qdq``: a thin wrapper over boq_edge.calibration.lint_qdq (torch-free)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from boq_edge.cli.app import app, console, fail


@app.command("lint-qdq")
def lint_qdq_cmd(
    model: Path = typer.Argument(..., help="A Q/DQ ONNX model (e.g. a TensorRT INT8 bundle's model.onnx)."),
) -> None:
    """Check a Q/DQ ONNX model against TensorRT's explicit-INT8 rules; non-zero exit names each violation."""
    from boq_edge.calibration.lint_qdq import lint_file

    try:
        report = lint_file(model)
    except (FileNotFoundError, ValueError) as e:
        fail(str(e))
    for v in report.violations:
        console.print(f"[red]✗[/] {escape(str(v))}", highlight=False, soft_wrap=True)
    if report.num_dequantize == 0:
        fail(f"{model} has no QuantizeLinear/DequantizeLinear nodes: not an explicit INT8 model", code=1)
    if report.violations:
        fail(f"{model}: {len(report.violations)} violation(s) of the TensorRT Q/DQ rules", code=1)
    floats = f", {len(report.float_nodes)} Conv/MatMul/Gemm wholly in float" if report.float_nodes else ""
    console.print(f"[green]✓[/] {model}: {len(report.quantized_nodes)} INT8 Conv/MatMul/Gemm, "
                  f"{report.num_quantize} Q / {report.num_dequantize} DQ{floats}; all rules hold", highlight=False)
