"""What the control-plane benchmarks share: the machine's CPU facts, a process's CPU time, and the
environment that runs the operator from a baseline checkout.

Imported by bench/control_plane.py and bench/scale.py (run as scripts, so this folder is on sys.path).
"""

from __future__ import annotations

import os
import pathlib


def cpu_info() -> dict:
    """CPU model, flags and load average of the machine the figures come from."""
    model, flags = "", ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name") and not model:
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = line.split(":", 1)[1].strip()
    except OSError:
        pass
    return {
        "cpu_model": model,
        "cpu_flags": flags,
        "cpu_count": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def cpu_seconds(pid: int | None) -> float:
    """utime + stime of a process so far (CPU time is far less noisy than latency on a shared machine)."""
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


def code_env(code: str | None) -> dict[str, str]:
    """Run the operator (and the emulator) from another checkout, e.g. a `git worktree` of the baseline
    commit: PYTHONPATH comes before the editable install's finder, so that checkout's packages are imported."""
    if not code:
        return {}
    dirs = [str(pathlib.Path(code).resolve() / d) for d in ("operator", "common")]
    return {"PYTHONPATH": os.pathsep.join(dirs + [os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
