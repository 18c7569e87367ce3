"""Capture REAL ModelDeployment objects from sandbox runs for the Argo CD health check's tests.

    .venv/bin/python scripts/capture_health_objects.py [OUT_DIR]   (default tests/data/health; ~2 min)

Runs two sandbox scenarios with the real operator and reads the ModelDeployment from the sandbox's API
server every 0.1 s, keeping the first object seen in each state named below:
  tests/data/scenarios/gitops-health.yaml -> not-observed.json (the version edited, not yet seen by the
                                             operator), progressing.json, paused.json, promoted.json, and
                                             invalid.json (an invalid spec patched in at the end)
  examples/scenarios/error-burst-fail-fast.yaml -> rolled-back.json
  examples/scenarios/approval-gate-promoted.yaml -> awaiting-approval.json (a sign-off gate not decided yet)
tests/unit/test_health.py runs charts/modeldeploy/docs/argocd-health.lua on them. Re-run after a change of
the status' shape; the objects are written as the API server returned them.
"""

from __future__ import annotations

import json
import pathlib
import sys
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _state(generation: int, phase: str, observed: bool = True, **fields):
    def matches(obj: dict) -> bool:
        st = obj.get("status") or {}
        return (
            obj["metadata"]["generation"] == generation
            and st.get("phase") == phase
            and (st.get("observedGeneration") == generation) is observed
            and all(st.get(k) == v for k, v in fields.items())
        )

    return matches


def capture(scenario: pathlib.Path, wanted: dict, invalid: bool = False) -> dict[str, dict]:
    """file name -> the first object seen that matches the file's predicate."""
    from mdsandbox.cli import run_one

    seen: dict[str, dict] = {}
    stop = threading.Event()

    def poll(sandbox) -> None:
        while not stop.is_set():
            try:
                obj = sandbox.api.request("GET", sandbox.platform.md_path, timeout=5)
                for name, matches in wanted.items():
                    if name not in seen and matches(obj):
                        seen[name] = obj
            except Exception:  # noqa: BLE001 - not created yet / no status yet / stopping
                pass
            stop.wait(0.1)

    def on_start(sandbox) -> None:
        threading.Thread(target=poll, args=(sandbox,), daemon=True).start()

    def on_finish(sandbox) -> None:
        if invalid:
            sandbox.api.request("PATCH", sandbox.platform.md_path, {"spec": {"strategy": {"canary": {"steps": [100, 50]}}}},
                                content_type="application/merge-patch+json")  # fmt: skip
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and "invalid.json" not in seen:
                time.sleep(0.1)
        time.sleep(0.3)
        stop.set()

    workdir = pathlib.Path("/tmp") / f"capture-{scenario.stem}"
    rc, report = run_one(str(scenario), workdir / "report.json", view="lines", workdir=str(workdir / "work"),
                         on_start=on_start, on_finish=on_finish)  # fmt: skip
    if rc != 0:
        raise SystemExit(f"{scenario.name} did not pass: {report and report.get('checks')}")
    missing = sorted(set(wanted) - set(seen))
    if missing:
        raise SystemExit(f"{scenario.name}: never saw {missing}")
    return seen


def main() -> int:
    out = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "tests" / "data" / "health"
    out.mkdir(parents=True, exist_ok=True)
    objects = capture(ROOT / "tests" / "data" / "scenarios" / "gitops-health.yaml", {
        "not-observed.json": _state(2, "Stable", observed=False),  # spec edited, the operator has not seen it yet
        "progressing.json": _state(2, "Progressing", canaryWeight=50),
        "paused.json": _state(2, "Paused"),
        "promoted.json": _state(2, "Stable", stableVersion=2),
        "invalid.json": _state(3, "Invalid"),
    }, invalid=True)  # fmt: skip
    objects |= capture(ROOT / "examples" / "scenarios" / "error-burst-fail-fast.yaml",
                       {"rolled-back.json": _state(2, "RolledBack")})  # fmt: skip
    objects |= capture(ROOT / "examples" / "scenarios" / "approval-gate-promoted.yaml", {
        "awaiting-approval.json": lambda o: _state(2, "Progressing")(o)
        and ((o.get("status") or {}).get("gates") or {}).get("awaiting") == "confirmPromotion",
    })  # fmt: skip
    for name, obj in sorted(objects.items()):
        (out / name).write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
        print(f"{out / name}: phase {obj['status']['phase']}, generation {obj['metadata']['generation']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
