"""The operator's commands of the one ``modeldeploy`` CLI (the launcher itself is `mdcommon.cli`).

The operator distribution registers these groups as entry points (group ``modeldeploy.commands``,
see pyproject.toml); the sandbox and the model distributions add theirs the same way:

    modeldeploy validate FILE...        offline checks: CRD schema, CEL rules, semantic rules (manifests.py)
    modeldeploy render FILE             every object the operator would create, as YAML (manifests.py)
    modeldeploy operator                run the operator (kopf) in this process (operator.py)
    kubectl-modeldeploy ...             the kubectl plugin: status/history/promote/abort/... (plugin.py)

`python -m modeldeploy.cli ...` is the same command as ``modeldeploy ...``.
"""

from __future__ import annotations

from mdcommon.cli import build_parser, main

__all__ = ["build_parser", "main"]
