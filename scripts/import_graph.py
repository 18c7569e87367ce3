"""Print the project's import graph, one line per package edge (for docs/architecture.md).

    python scripts/import_graph.py [REPO_ROOT]      default: this checkout

Built with grimp (import-linter's graph library), so it counts every import statement, lazy
(function-local) ones included. Dynamic imports are added too: a string constant naming a project
module in a module that calls importlib.import_module (how the CLI used to find its groups).

Three sections: edges between packages (NODES, longest prefix wins; an edge inside one node is not
shown), then edges between the operator's own modules and subpackages (modeldeploy.X), where the
layering contracts in pyproject.toml apply, then the edges of the sandbox platform's modules
(mdsandbox.X, a subpackage as one node) to each other and to the operator's and the emulator's
modules (modeldeploy.X, kubeemu.X). Works on the old layout too (operator/modeldeploy/sandbox),
which is how the BEFORE graph in docs/architecture.md was made: `git worktree add /tmp/before
17463c0 && python scripts/import_graph.py /tmp/before`.
"""

from __future__ import annotations

import ast
import collections
import pathlib
import sys

import grimp

SOURCE_DIRS = ("operator", "common", "model", "sandbox", "dashboard")
TOP_LEVEL = ("modeldeploy", "mdcommon", "xraymodel", "kubeemu", "mdsandbox", "mddashboard")
NODES = ("modeldeploy.sandbox", "modeldeploy.cli", "modeldeploy", "mdcommon", "kubeemu", "mdsandbox",
         "mddashboard", "xraymodel.evaluator", "xraymodel")


def node(module: str, nodes: tuple[str, ...]) -> str:
    return max((n for n in nodes if module == n or module.startswith(n + ".")), key=len, default=module)


def operator_node(module: str) -> str | None:
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "modeldeploy" and len(parts) > 1 else None


def sandbox_node(module: str) -> str | None:
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] in ("mdsandbox", "modeldeploy", "kubeemu") and len(parts) > 1 else None


def dynamic_imports(root: pathlib.Path, modules: set[str]) -> list[tuple[str, str]]:
    """(importer, imported) for module names given as strings to importlib.import_module."""
    found = []
    for src in SOURCE_DIRS:
        for path in (root / src).rglob("*.py") if (root / src).is_dir() else ():
            text = path.read_text(encoding="utf-8")
            if "import_module" not in text:
                continue
            rel = path.relative_to(root / src).with_suffix("")
            importer = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
            for const in ast.walk(ast.parse(text)):
                if isinstance(const, ast.Constant) and isinstance(const.value, str) and const.value in modules:
                    found.append((importer, const.value))
    return found


def edges(root: pathlib.Path) -> tuple[collections.Counter, collections.Counter, collections.Counter]:
    sys.path[:0] = [str(root / d) for d in SOURCE_DIRS if (root / d).is_dir()]
    present = [p for p in TOP_LEVEL if any((root / d / p / "__init__.py").exists() for d in SOURCE_DIRS)]
    graph = grimp.build_graph(*present, include_external_packages=False, cache_dir=None)
    pairs: list[tuple[str, str]] = []
    for importer in graph.modules:
        for imported in graph.find_modules_directly_imported_by(importer):
            pairs += [(importer, imported)] * len(graph.get_import_details(importer=importer, imported=imported))
    pairs += dynamic_imports(root, set(graph.modules))
    packages: collections.Counter = collections.Counter()
    operator: collections.Counter = collections.Counter()
    sandbox: collections.Counter = collections.Counter()
    for importer, imported in pairs:
        a, b = node(importer, NODES), node(imported, NODES)
        if a != b:
            packages[(a, b)] += 1
        a, b = operator_node(importer), operator_node(imported)
        if a and b and a != b and not a.startswith("modeldeploy.sandbox"):
            operator[(a, b)] += 1
        a, b = sandbox_node(importer), sandbox_node(imported)
        if a and b and a != b and a.startswith("mdsandbox."):
            sandbox[(a, b)] += 1
    return packages, operator, sandbox


def main(argv: list[str]) -> int:
    root = pathlib.Path(argv[1] if len(argv) > 1 else pathlib.Path(__file__).resolve().parents[1]).resolve()
    packages, operator, sandbox = edges(root)
    print("# package edges: importer -> imported (import statements)")
    for (a, b), n in sorted(packages.items()):
        back = "   <- cycle" if (b, a) in packages else ""
        print(f"{a} -> {b} ({n}){back}")
    print("\n# operator-internal edges (modeldeploy.X)")
    for (a, b), n in sorted(operator.items()):
        back = "   <- cycle" if (b, a) in operator else ""
        print(f"{a} -> {b} ({n}){back}")
    print("\n# sandbox platform edges (mdsandbox.X -> mdsandbox.Y | modeldeploy.X | kubeemu.X)")
    for (a, b), n in sorted(sandbox.items()):
        back = "   <- cycle" if (b, a) in sandbox else ""
        print(f"{a} -> {b} ({n}){back}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
