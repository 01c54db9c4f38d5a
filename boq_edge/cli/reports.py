"""How results look on the terminal: bundles, the validation table and gate verdicts (shared by several commands)."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table

from boq_edge.cli.app import console, err_console


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    value, unit = float(n) / 1024, "KiB"
    for bigger in ("MiB", "GiB"):
        if value < 1024:
            break
        value, unit = value / 1024, bigger
    return f"{value:.1f} {unit}"


def print_bundle(path: Path) -> None:
    """The verified bundle in a few rows: target, precision, preset, input, files and sizes."""
    from boq_edge.runtime.manifest import read_manifest

    m = read_manifest(path, verify=True)
    t = Table(show_header=False, title=f"bundle {path}")
    t.add_row("target / precision", f"{m.target} / {m.precision}")
    t.add_row("preset", f"{m.preset} ({m.descriptor_dim}-D descriptors)")
    t.add_row("input", f"{m.input_name} {'×'.join(map(str, m.input_shape))}, batch {':'.join(map(str, m.batch_range))}")
    if m.inference_precision:
        t.add_row("OpenVINO CPU precision", m.inference_precision)
    for rel in sorted(m.files):
        t.add_row(rel, _size((path / rel).stat().st_size))
    console.print(t)


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
    """The reference row (torch FP32) then one row per artifact: recall, drop with its interval, cosine, latency."""
    nan = float("nan")
    t = Table("model", "precision", "R@1", "R@5", "R@1 drop pp [95% CI]", "p", "R@5 drop pp", "cross R@1",
              "cos min", "top-1 agree", "p50 ms", "speedup",
              title=f"validation on {report['benchmark'].get('name', '')} "
                    f"({report['benchmark'].get('num_queries')} queries)")
    shown = set()
    for a in report["artifacts"]:
        if a.get("status") == "failed":
            t.add_row(a["name"], "—", "[bold red]failed[/]", a.get("reason", "")[:90], *["" for _ in range(8)])
            continue
        rr, rl = a["reference_recall"], a["reference_latency_ms"]
        key = (tuple(a["input_size"]), rr["1"])
        if key not in shown:
            shown.add(key)
            t.add_row(f"torch reference ({report['reference']['device']})", "fp32", f"{rr['1']:.2f}",
                      f"{rr.get('5', nan):.2f}", "—", "—", "—", "—", "—", "—", f"{rl['p50']:.2f}", "1.00×")
        r, stats = a["recall"], a.get("recall_drop_stats") or {}
        s1 = stats.get("1", {})
        interval = f"{a['recall_drop_pp']['1']:+.2f} [{s1.get('lower', nan):+.2f}, {s1.get('upper', nan):+.2f}]"
        cross = (a.get("cross_recall") or {}).get("artifact_queries_reference_database", {}).get("1", nan)
        name = a["name"] + (" (foreign ref.)" if a.get("foreign_reference") else "")
        t.add_row(name, str(a.get("precision")), f"{r['1']:.2f}", f"{r.get('5', nan):.2f}", interval,
                  f"{s1.get('mcnemar_p', nan):.2g}", f"{a['recall_drop_pp'].get('5', nan):+.2f}", f"{cross:.2f}",
                  f"{a['cosine']['min']:.5f}", f"{a['top1_agreement']:.1f}%", f"{a['latency_ms']['p50']:.2f}",
                  f"{a['speedup']:.2f}×")
    console.print(t)
