"""GitOps health, PURE: the kstatus conditions Ready / Reconciling / Stalled of a ModelDeployment.

Three outside tools judge a resource, and they must give the same answer:

- kstatus (sigs.k8s.io/cli-utils pkg/kstatus/status, used by Flux's health checks, kpt, kapp...):
  `checkGenericProperties` then `checkReadyCondition`, in this order:
    1. metadata.generation != status.observedGeneration          -> InProgress (LatestGenerationNotObserved)
    2. condition Reconciling=True                                -> InProgress
       condition Stalled=True                                    -> Failed
    3. condition Ready=True -> Current; Ready=False or Unknown   -> InProgress
    4. none of these                                             -> Current
- `kubectl wait --for=condition=Ready` (kubectl pkg/cmd/wait, ConditionalWait.checkCondition): the Ready
  condition's status, but only once its observedGeneration (else status.observedGeneration) has caught up
  with metadata.generation;
- Argo CD: the Lua health check shipped in charts/modeldeploy/docs/argocd-health.lua, which reads the
  same three conditions.

So the rule here is: **Ready=True exactly when neither Reconciling nor Stalled is True**, every condition
carries the generation it was computed for, and Ready=True means "spec.model.version serves all live
traffic from ready pods". Then kstatus Current == kubectl wait done == Argo CD Healthy
(tests/unit/test_health.py proves the three agree on every row).

The conditions follow the "abnormal-true" polarity of kstatus for Reconciling and Stalled:
- Reconciling=True: the operator is still working toward the spec (first version starting, a rollout in
  progress, a rollout paused by a human or waiting for a webhook gate's yes, the stable version's pods not
  ready);
- Stalled=True: the spec will not be reached without a human (the spec is invalid, the new version was
  rolled back, or it failed with automatic rollback off and is held).
The older conditions stay as they were (Progressing, Degraded, PodsStalled, GPUFallback); the old meaning
of Ready ("the stable version's pods are ready", whatever the spec asks) moved to the new `Available`.
"""

from __future__ import annotations

from dataclasses import dataclass

# phase -> the Stalled reason (the spec will not be reached without a human)
_STALLED = {"Invalid": "InvalidSpec", "RolledBack": "RolledBack", "Failed": "RolloutFailed"}
# phase -> the Reconciling reason (the operator is still working toward the spec)
_RECONCILING = {"Initializing": "Initializing", "Progressing": "RolloutInProgress", "Paused": "Paused"}


@dataclass(frozen=True)
class Condition:
    type: str
    status: bool
    reason: str
    message: str


@dataclass(frozen=True)
class Health:
    ready: Condition
    reconciling: Condition
    stalled: Condition

    @property
    def conditions(self) -> tuple[Condition, Condition, Condition]:
        return (self.ready, self.reconciling, self.stalled)


def gitops_health(
    phase: str,
    message: str,
    *,
    target_version: int | None,
    stable_version: int | None,
    stable_serving: bool,
    stable_detail: str = "",
    awaiting_approval: bool = False,
) -> Health:
    """The three kstatus conditions for a ModelDeployment in `phase` (with its status `message`).

    `target_version` is spec.model.version, `stable_version` the version serving live traffic,
    `stable_serving` whether its pods are ready (`stable_detail` says how many). A Paused phase with
    nothing left to roll out (target == stable) counts as reconciled: a pause only holds a rollout.
    `awaiting_approval`: a rollout held by a webhook gate (spec.gates) for a yes: reason AwaitingApproval
    (Argo CD: Suspended, like a pause: a human or system must act).
    """
    if phase in _STALLED:
        reason = _STALLED[phase]
        return Health(
            ready=Condition("Ready", False, reason, message),
            reconciling=Condition("Reconciling", False, reason, "the operator waits for a human (see Stalled)"),
            stalled=Condition("Stalled", True, reason, message),
        )
    pending = phase in _RECONCILING and not (phase == "Paused" and target_version == stable_version)
    if pending:
        reason = "AwaitingApproval" if awaiting_approval and phase == "Progressing" else _RECONCILING[phase]
    elif not stable_serving:
        reason = "StableNotReady"
        message = f"version {stable_version}: {stable_detail or 'pods not ready'}"
    else:
        done = f"version {stable_version} serves all live traffic" + (f" ({stable_detail})" if stable_detail else "")
        return Health(
            ready=Condition("Ready", True, "StableAvailable", done),
            reconciling=Condition("Reconciling", False, "Reconciled", done),
            stalled=Condition("Stalled", False, "AsExpected", "no failed rollout, the spec is valid"),
        )
    return Health(
        ready=Condition("Ready", False, reason, message),
        reconciling=Condition("Reconciling", True, reason, message),
        stalled=Condition("Stalled", False, "AsExpected", "no failed rollout, the spec is valid"),
    )
