"""Derive the Kubernetes permissions the operator needs FROM ITS CODE (AST), for the RBAC tests.

Sources, all read from the source files (so a change in the code shows up here by itself):

1. kube.py, class ``Kube``: every ``self._call(verb, kind, k, namespace, name, subresource=...)`` site. A
   literal kind (``"Event"``, ``"ModelDeployment/status"``) is resolved from the Kind constant it passes
   (``EVENT`` -> core ``events``; ``MODELDEPLOYMENT`` with ``subresource="status"`` ->
   ``modeldeployments/status``). A ``k.kind`` site is a parameter: the kind comes from the caller. Methods calling methods (``apply`` -> ``get``/``create``/``patch``) are followed.
2. The operator's runtime modules (everything ``modeldeploy.main`` and ``modeldeploy.cli.operator``
   import, transitively): every ``<...>kube.<method>(...)`` call. A parameter kind is resolved from
   the first argument (a module constant such as ``DEPLOYMENT = KINDS[("apps/v1", "Deployment")]``),
   or, for methods that take a whole object (``apply``/``create``: they call ``kind_of(obj)``), from
   every manifest the pure renderers in ``modeldeploy/render/`` build (dict literals with apiVersion,
   kind and metadata).
   Owner references with ``blockOwnerDeletion: true`` (dict literals in those modules) need
   ``update`` on the owner's ``finalizers`` subresource (OwnerReferencesPermissionEnforcement).
3. main.py's kopf decorators: a resource handler needs list+watch; handlers that need a finalizer
   (daemon, timer, non-optional on.delete) or store state (on.create/update/resume/field) need patch.
4. kopf's own needs, from main.py's settings: CRD list/watch unless ``settings.scanning.disabled``;
   namespaces list/watch in namespaced mode (same switch); events create unless
   ``settings.posting.enabled = False``; kopf.dev peering list/watch/patch when peering is configured.

Anything the scanner cannot resolve raises ``ScanError`` naming the file and line: extend the
scanner rather than let a permission go unseen.
"""

from __future__ import annotations

import ast
import functools
import importlib
import pathlib
from dataclasses import dataclass, field
from typing import Any

from chartlib import ROOT

PACKAGE_DIR = ROOT / "operator" / "modeldeploy"
ENTRY_MODULES = ("modeldeploy.main", "modeldeploy.cli.operator")
PARAM = "<param>"
ACTIONS = {"read": "get", "list": "list", "create": "create", "patch": "patch", "delete": "delete",
           "replace": "update", "delete_collection": "deletecollection"}
CLUSTER_SCOPED = {"namespaces", "nodes", "customresourcedefinitions", "clusterkopfpeerings",
                  "clusterroles", "clusterrolebindings", "persistentvolumes", "storageclasses"}

Triple = tuple[str, str, str]


class ScanError(AssertionError):
    pass


@dataclass
class Sources:
    """Source texts by module name (overridable, so tests can show the scanner catches a change)."""

    overrides: dict[str, str] = field(default_factory=dict)

    def path(self, module: str) -> pathlib.Path | None:
        parts = module.split(".")
        if parts[0] != "modeldeploy":
            return None
        base = PACKAGE_DIR.joinpath(*parts[1:])
        if base.with_suffix(".py").exists():
            return base.with_suffix(".py")
        if (base / "__init__.py").exists():
            return base / "__init__.py"
        return None

    def text(self, module: str) -> str:
        if module in self.overrides:
            return self.overrides[module]
        path = self.path(module)
        if path is None:
            raise ScanError(f"no source for {module}")
        return path.read_text()

    def tree(self, module: str) -> ast.Module:
        return _parse(self.text(module), module)


@functools.lru_cache(maxsize=256)
def _parse(text: str, module: str) -> ast.Module:
    return ast.parse(text, filename=module)


def _module_namespace(module: str) -> dict[str, Any]:
    return vars(importlib.import_module(module))


def _eval(node: ast.AST, module: str, where: str) -> Any:
    """Evaluate a constant-like expression (names, subscripts of module constants) in the module."""
    if isinstance(node, ast.Constant):
        return node.value
    try:
        return eval(compile(ast.Expression(node), where, "eval"), dict(_module_namespace(module)))  # noqa: S307
    except Exception as exc:  # pragma: no cover - reported as a scan error
        raise ScanError(f"{where}: cannot resolve {ast.unparse(node)!r}: {exc}") from None


# ---------------------------------------------------------------------------------------------
# 1. kube.py: what each Kube method calls
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Effect:
    verb: str
    target: Any  # PARAM, or (api_group, resource)


def _resource_of_call(call: ast.Call, module: str, where: str) -> tuple[str, str]:
    """(group, resource) of `_call(verb, kind, <Kind constant>, ..., subresource=...)`."""
    target = _eval(call.args[2], module, where)
    if not (hasattr(target, "plural") and hasattr(target, "group")):
        raise ScanError(f"{where}: _call's third argument is not a Kind: {ast.unparse(call.args[2])}")
    sub = next((kw.value for kw in call.keywords if kw.arg == "subresource"), None)
    if sub is not None and not (isinstance(sub, ast.Constant) and isinstance(sub.value, str)):
        raise ScanError(f"{where}: _call subresource must be a string literal")
    return target.group, target.plural + (f"/{sub.value}" if sub is not None else "")


def kube_effects(sources: Sources) -> tuple[dict[str, set[Effect]], set[str]]:
    """{Kube method: effects}, and the methods whose kind parameter is an object (kind_of(obj))."""
    module = "modeldeploy.kube"
    tree = sources.tree(module)
    cls = next((n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Kube"), None)
    if cls is None:
        raise ScanError("kube.py has no class Kube")
    methods = {n.name: n for n in cls.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    direct: dict[str, set[Effect]] = {name: set() for name in methods}
    calls: dict[str, list[tuple[str, ast.AST | None]]] = {name: [] for name in methods}
    object_methods: set[str] = set()
    for name, fn in methods.items():
        for node in ast.walk(fn):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            if isinstance(func, ast.Name) and func.id == "kind_of":
                object_methods.add(name)
            if not (isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "self"):
                continue
            where = f"kube.py:{node.lineno}"
            if func.attr == "_call":
                verb_node, kind_node = node.args[0], node.args[1]
                if not (isinstance(verb_node, ast.Constant) and isinstance(verb_node.value, str)):
                    raise ScanError(f"{where}: _call verb must be a string literal")
                verb = verb_node.value
                if verb not in ACTIONS.values():
                    raise ScanError(f"{where}: unknown _call verb {verb!r}")
                if isinstance(kind_node, ast.Constant):
                    group, resource = _resource_of_call(node, module, where)
                    base = kind_node.value.split("/")[0].lower() + "s"
                    if resource.split("/")[0] != base:
                        raise ScanError(f"{where}: _call kind {kind_node.value!r} but the client call is on {resource}")
                    direct[name].add(Effect(verb, (group, resource)))
                elif isinstance(kind_node, ast.Attribute) and kind_node.attr == "kind":
                    direct[name].add(Effect(verb, PARAM))
                else:
                    raise ScanError(f"{where}: cannot tell the kind of _call({ast.unparse(kind_node)})")
            elif func.attr in methods:
                calls[name].append((func.attr, node.args[0] if node.args else None))
    resolved: dict[str, set[Effect]] = {}

    def effects_of(name: str, stack: tuple[str, ...] = ()) -> set[Effect]:
        if name in resolved:
            return resolved[name]
        if name in stack:
            return set()
        out = set(direct[name])
        for callee, arg in calls[name]:
            sub = effects_of(callee, stack + (name,))
            concrete = None
            if arg is not None and isinstance(arg, (ast.Subscript, ast.Name)):
                value = None
                try:
                    value = _eval(arg, module, f"kube.py:{arg.lineno}")
                except ScanError:
                    value = None  # a local variable: stays a parameter
                if hasattr(value, "plural") and hasattr(value, "group"):
                    concrete = (value.group, value.plural)
            for eff in sub:
                if eff.target == PARAM and concrete is not None:
                    out.add(Effect(eff.verb, concrete))
                else:
                    out.add(eff)
        resolved[name] = out
        return out

    for name in methods:
        effects_of(name)
    return resolved, object_methods


# ---------------------------------------------------------------------------------------------
# 2. Callers: the operator's runtime modules
# ---------------------------------------------------------------------------------------------

def runtime_modules(sources: Sources) -> list[str]:
    """modeldeploy modules the operator process imports (transitively, including function-level imports)."""
    seen: list[str] = []
    todo = list(ENTRY_MODULES)
    while todo:
        module = todo.pop()
        if module in seen or sources.path(module) is None and module not in sources.overrides:
            continue
        seen.append(module)
        todo.extend(m for m in _imports(sources.text(module), module) if m not in seen)
    return sorted(seen)


@functools.lru_cache(maxsize=256)
def _imports(text: str, module: str) -> tuple[str, ...]:
    """modeldeploy modules (and their parent packages) a module imports anywhere in its body."""
    out: list[str] = []
    for node in ast.walk(_parse(text, module)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            base = node.module if node.level == 0 else _relative(module, node.module, node.level)
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        for imported in names:
            parts = imported.split(".")
            out.extend(".".join(parts[:i]) for i in range(1, len(parts) + 1) if parts[0] == "modeldeploy")
    return tuple(dict.fromkeys(out))


@functools.lru_cache(maxsize=256)
def _calls(text: str, module: str) -> tuple[ast.Call, ...]:
    return tuple(n for n in ast.walk(_parse(text, module))
                 if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute))


def _relative(module: str, name: str, level: int) -> str:
    parts = module.split(".")
    return ".".join(parts[: len(parts) - level] + [name])


def rendered_kinds(sources: Sources) -> set[tuple[str, str]]:
    """(apiVersion, kind) of every manifest literal the pure renderers build."""
    found = set()
    for path in sorted((PACKAGE_DIR / "render").glob("*.py")):
        module = "modeldeploy.render" + ("" if path.stem == "__init__" else f".{path.stem}")
        for node in ast.walk(sources.tree(module)):
            if not isinstance(node, ast.Dict):
                continue
            keys = {k.value: v for k, v in zip(node.keys, node.values) if isinstance(k, ast.Constant)}
            if {"apiVersion", "kind", "metadata"} <= keys.keys():
                api_version = _eval(keys["apiVersion"], module, f"{path.name}:{node.lineno}")
                kind = _eval(keys["kind"], module, f"{path.name}:{node.lineno}")
                found.add((api_version, kind))
    return found


def code_triples(sources: Sources | None = None) -> tuple[set[Triple], list[str]]:
    """Permissions our own code's API calls need, with a line of evidence for each."""
    sources = sources or Sources()
    effects, object_methods = kube_effects(sources)
    kinds = _module_namespace("modeldeploy.kube")["KINDS"]
    rendered = sorted(rendered_kinds(sources))
    triples: set[Triple] = set()
    evidence: list[str] = []
    modules = runtime_modules(sources)
    for module in modules:
        if module == "modeldeploy.kube":
            continue
        for node in _calls(sources.text(module), module):
            if node.func.attr not in effects:
                continue
            receiver = ast.unparse(node.func.value)
            if not (receiver == "kube" or receiver.endswith(".kube")):
                continue
            where = f"{module}:{node.lineno}"
            method = node.func.attr
            for eff in effects[method]:
                if eff.target != PARAM:
                    targets = [eff.target]
                elif method in object_methods:
                    targets = []
                    for api_version, kind in rendered:
                        k = kinds.get((api_version, kind))
                        if k is None:
                            raise ScanError(f"render builds {api_version}/{kind}, which kube.KINDS cannot apply")
                        targets.append((k.group, k.plural))
                else:
                    if not node.args:
                        raise ScanError(f"{where}: {method}() without a kind argument")
                    k = _eval(node.args[0], module, where)
                    if not (hasattr(k, "group") and hasattr(k, "plural")):
                        raise ScanError(f"{where}: first argument of {method}() is not a kube.Kind")
                    targets = [(k.group, k.plural)]
                for group, resource in targets:
                    triples.add((group, resource, eff.verb))
                    evidence.append(f"{where} kube.{method} -> {eff.verb} {group or 'core'}/{resource}")
    # ownerReferences with blockOwnerDeletion: true: with the OwnerReferencesPermissionEnforcement
    # admission plugin (OpenShift's default) creating such a child needs `update` on the OWNER's
    # finalizers subresource (plugin/pkg/admission/gc/gc_admission.go), whatever else we may do.
    for module in modules:
        for node in ast.walk(sources.tree(module)):
            if not isinstance(node, ast.Dict):
                continue
            keys = {k.value: v for k, v in zip(node.keys, node.values) if isinstance(k, ast.Constant)}
            if "blockOwnerDeletion" not in keys or {"apiVersion", "kind"} - keys.keys():
                continue
            where = f"{module}:{node.lineno}"
            if _eval(keys["blockOwnerDeletion"], module, where) is not True:
                continue
            owner = kinds.get((_eval(keys["apiVersion"], module, where), _eval(keys["kind"], module, where)))
            if owner is None:
                raise ScanError(f"{where}: an owner reference to a kind kube.KINDS does not know")
            triples.add((owner.group, f"{owner.plural}/finalizers", "update"))
            evidence.append(f"{where} ownerReferences blockOwnerDeletion -> update {owner.group}/{owner.plural}/finalizers")
    # Guard: nobody else talks to the API behind kube.py's back.
    for module in modules:
        if module == "modeldeploy.kube":
            continue
        text = sources.text(module)
        for needle in ("CoreV1Api", "AppsV1Api", "CustomObjectsApi", "kubernetes.client."):
            if needle in text:
                raise ScanError(f"{module} uses {needle}: only kube.py may call the Kubernetes API")
    return triples, evidence


# ---------------------------------------------------------------------------------------------
# 3 + 4. kopf handlers and kopf itself
# ---------------------------------------------------------------------------------------------

RESOURCE_DECORATORS = {
    "kopf.index": False, "kopf.on.event": False,
    "kopf.daemon": True, "kopf.timer": True,
    "kopf.on.create": True, "kopf.on.update": True, "kopf.on.resume": True, "kopf.on.field": True,
    "kopf.on.delete": True,  # unless optional=True
}
ACTIVITY_DECORATORS = {"kopf.on.startup", "kopf.on.cleanup", "kopf.on.probe", "kopf.on.login",
                       "kopf.on.mutate", "kopf.on.validate"}


@dataclass
class KopfFacts:
    handlers: list[tuple[str, str, str, bool]]  # (decorator, group, plural, needs patch)
    scanning_disabled: bool
    posting_enabled: bool
    peering_configurable: bool


def kopf_facts(sources: Sources | None = None) -> KopfFacts:
    sources = sources or Sources()
    module = "modeldeploy.main"
    tree = sources.tree(module)
    handlers = []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for deco in node.decorator_list:
            call = deco if isinstance(deco, ast.Call) else None
            name = ast.unparse(call.func if call else deco)
            if not name.startswith("kopf."):
                continue
            if name in ACTIVITY_DECORATORS:
                continue
            if name not in RESOURCE_DECORATORS:
                raise ScanError(f"main.py:{node.lineno}: unknown kopf decorator {name}: teach the RBAC scanner")
            where = f"main.py:{node.lineno}"
            args = [_eval(a, module, where) for a in (call.args if call else [])]
            if len(args) == 3:
                group, _version, plural = args
            elif len(args) == 2 and args[0] == "v1":
                group, plural = "", args[1]
            else:
                raise ScanError(f"{where}: give {name} (group, version, plural) so the RBAC is unambiguous")
            needs_patch = RESOURCE_DECORATORS[name]
            if name == "kopf.on.delete" and any(k.arg == "optional" and _eval(k.value, module, where) for k in call.keywords):
                needs_patch = False
            handlers.append((name, group, plural, needs_patch))
    settings = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                text = ast.unparse(target)
                if text.startswith("settings."):
                    settings.setdefault(text, []).append(node.value)
    scanning_disabled = any(isinstance(v, ast.Constant) and v.value is True for v in settings.get("settings.scanning.disabled", []))
    posting_enabled = not any(isinstance(v, ast.Constant) and v.value is False for v in settings.get("settings.posting.enabled", []))
    peering_configurable = "settings.peering.name" in settings
    return KopfFacts(handlers, scanning_disabled, posting_enabled, peering_configurable)


def kopf_triples(facts: KopfFacts, *, clusterwide: bool, peering: bool) -> set[Triple]:
    out: set[Triple] = set()
    for _name, group, plural, needs_patch in facts.handlers:
        out |= {(group, plural, "list"), (group, plural, "watch")}
        if needs_patch:
            out.add((group, plural, "patch"))
    if not facts.scanning_disabled:
        out |= {("apiextensions.k8s.io", "customresourcedefinitions", v) for v in ("list", "watch")}
        if not clusterwide:
            out |= {("", "namespaces", v) for v in ("list", "watch")}
    if facts.posting_enabled:
        out.add(("", "events", "create"))
    if peering and facts.peering_configurable:
        plural = "clusterkopfpeerings" if clusterwide else "kopfpeerings"
        out |= {("kopf.dev", plural, v) for v in ("list", "watch", "patch")}
    return out


def derived_triples(*, clusterwide: bool, peering: bool, sources: Sources | None = None) -> set[Triple]:
    """Everything the operator process needs in one mode: our code + kopf handlers + kopf itself."""
    sources = sources or Sources()
    code, _ = code_triples(sources)
    return code | kopf_triples(kopf_facts(sources), clusterwide=clusterwide, peering=peering)



MODES = [
    {"clusterwide": True, "peering": False},
    {"clusterwide": False, "peering": False},
    {"clusterwide": True, "peering": True},
    {"clusterwide": False, "peering": True},
]
