"""How reports look on the terminal: the validation table and gate verdicts (shared by validate, gate, quickstart)."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table

from boq_edge.cli.app import console, err_console


def print_checks(checks: list, junit: Path | None) -> int:
    from boq_edge.gate import junit_xml

    failed = [c for c in checks if not c.passed]
    for c in checks:
        mark = "[green]PASS[/]" if c.passed else "[bold red]FAIL[/]"
        (console if c.passed else err_console).print(f"{mark} {c.describe()}", highlight=False, soft_wrap=True)
    if junit is not None:
        from boq_edge.fileio import atomic_write_text

        atomic_write_text(junit, junit_xml(checks))
    if failed:
        err_console.print(f"[bold red]gate failed:[/] {len(failed)} of {len(checks)} rule checks violated",
                          highlight=False, soft_wrap=True)
    return 1 if failed else 0


def print_validation_table(report: dict) -> None:
    """The reference row (torch FP32) then one row per artifact: R@1/5/10, drop, cosine, latency, speedup."""
    t = Table("model", "precision", "R@1", "R@5", "R@10", "ΔR@1 pp", "cos min", "top-1 agree", "p50 ms", "speedup",
              title=f"validation on {report['benchmark'].get('name', '')}")
    shown = set()
    for a in report["artifacts"]:
        rr, rl = a["reference_recall"], a["reference_latency_ms"]
        key = (tuple(a["input_size"]), rr["1"])
        if key not in shown:
            shown.add(key)
            t.add_row(f"torch reference ({report['reference']['device']})", "fp32", f"{rr['1']:.2f}",
                      f"{rr.get('5', float('nan')):.2f}", f"{rr.get('10', float('nan')):.2f}", "—", "—", "—",
                      f"{rl['p50']:.2f}", "1.00×")
        r = a["recall"]
        t.add_row(a["name"], str(a.get("precision")), f"{r['1']:.2f}", f"{r.get('5', float('nan')):.2f}",
                  f"{r.get('10', float('nan')):.2f}", f"{a['recall_drop_pp']['1']:+.2f}", f"{a['cosine']['min']:.5f}",
                  f"{a['top1_agreement']:.1f}%", f"{a['latency_ms']['p50']:.2f}", f"{a['speedup']:.2f}×")
    console.print(t)
