"""Sessions people use: tests, lint, typecheck, benchmarks.

Sessions reuse the current interpreter's packages (``venv_backend="none"``) because the
CPU torch wheel and the inference runtimes are large; CI installs them once with the
README's command. Pass ``-- ARGS`` to forward arguments (e.g. ``nox -s tests -- -k fold``).
"""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "tests"]


@nox.session(venv_backend="none")
def tests(session: nox.Session) -> None:
    """The test suite (TensorRT tests skip themselves without tensorrt and a GPU)."""
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session(venv_backend="none")
def lint(session: nox.Session) -> None:
    session.run("ruff", "check", "boq_edge", "export", "calibration", "tests", "benchmarks", "noxfile.py")


@nox.session(venv_backend="none")
def typecheck(session: nox.Session) -> None:
    session.run("mypy")


@nox.session(venv_backend="none")
def benchmarks(session: nox.Session) -> None:
    """Side-by-side latency matrix; writes dated JSON + Markdown under benchmarks/results/."""
    session.run("python", "benchmarks/run.py", *session.posargs)
