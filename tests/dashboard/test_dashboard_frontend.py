"""The page's own unit tests (dashboard/frontend/test, Vitest) run in `make test` too."""

from __future__ import annotations

import pathlib
import subprocess

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_frontend_unit_tests_pass():
    proc = subprocess.run(["npm", "test", "--prefix", str(ROOT / "dashboard" / "frontend"), "--silent"],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert " passed" in proc.stdout and "failed" not in proc.stdout.split("Tests", 1)[-1].split("\n", 1)[0]
