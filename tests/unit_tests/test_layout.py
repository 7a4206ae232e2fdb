"""The layering stays as ARCHITECTURE.md draws it: no import circle (lazy imports included) and no import from
the library up into the service, the integrations or the eval harness (``scripts/import_graph.py``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_no_import_cycle_and_no_upward_import() -> None:
    run = subprocess.run(
        [sys.executable, "scripts/import_graph.py"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    lines = dict(line.split(": ", 1) for line in run.stdout.splitlines() if ": " in line)
    assert lines["module-level import cycles"] == "none"
    assert lines["cycles counting lazy (in-function) imports too"] == "none"
    assert lines["imports from a lower layer to a higher one"] == "none"
