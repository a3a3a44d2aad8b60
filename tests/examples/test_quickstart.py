"""examples/library_quickstart.py runs as a user runs it (a subprocess, from another folder) and ends in `closed`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

SCRIPT = ROOT / "examples" / "library_quickstart.py"
RP_1 = [("register_repair", "intake", "diagnosis"),
        ("fault_diagnosed", "diagnosis", "in_house_repair"),
        ("repair_completed", "in_house_repair", "self_recheck"),
        ("recheck_passed", "self_recheck", "customer_confirmation"),
        ("customer_confirmed", "customer_confirmation", "closed")]


def test_quickstart_drives_rp1_to_closed_and_prints_the_history(tmp_path: Path) -> None:
    # From an unrelated folder: the script finds processes/ from its own path, not the working directory.
    run = subprocess.run([sys.executable, str(SCRIPT)], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONIOENCODING": "utf-8"})
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert [line for line in lines if line.split(":")[0] in {e for e, _, _ in RP_1}] == [
        f"{event}: {source} → {target}" for event, source, target in RP_1]
    assert "final state: closed (completed)" in lines
    history = lines[lines.index("history:") + 1:]
    assert [h.split()[1] for h in history] == ["start", *(e for e, _, _ in RP_1)]
    assert history[-1].split()[-4:-2] == ["closed", "by"] and history[-1].endswith("eng-wang [repair_engineer]")
    assert list(tmp_path.iterdir()) == []  # the SQLite file was temporary
