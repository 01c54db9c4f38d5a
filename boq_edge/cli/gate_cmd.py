"""``boq-edge gate``: a validation report against rules, as a CI verdict (exit 1 naming each violation)."""

from __future__ import annotations

from pathlib import Path

import typer

from boq_edge.cli.app import app, fail
from boq_edge.cli.reports import print_checks


@app.command("gate")
def gate_cmd(
    report: Path = typer.Argument(..., help="report.json written by `boq-edge validate`."),
    rules: Path = typer.Option(
        ..., "--rules", help="TOML rules: a \\[gate] table of defaults (e.g. max_r1_drop_upper = 0.5) and "
        "optional \\[artifact.NAME] tables that override them for one artifact."),
    junit: Path | None = typer.Option(None, help="Also write the result as JUnit XML for CI."),
) -> None:
    """Check a validation report against rules; exit 1 naming each violated rule (measured vs allowed).

    Rules: max_r1_drop, max_r5_drop (pp), max_r1_drop_upper, max_r5_drop_upper (upper end of the 95 % interval,
    pp; recommended), max_cross_r1_drop (pp), min_r1 (%), min_cosine, min_mean_cosine, min_top1_agreement (%),
    max_latency_ms, max_p99_latency_ms, min_speedup. A rules file that sets nothing is an error (exit 2);
    an artifact that failed in validate fails every rule.
    """
    from boq_edge.gate import GateError, check_report, load_report, load_rules

    try:
        checks = check_report(load_report(report), load_rules(rules))
    except GateError as e:
        fail(str(e))
    code = print_checks(checks, junit)
    if code:
        raise typer.Exit(code)
