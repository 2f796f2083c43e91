"""The package imports one way: no cycle between its modules, nor between its components (a
top-level module or subpackage of ``jaxdiff``), counting every import, at module level or inside a
function. Read from the source with ``ast``; nothing is imported."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "jaxdiff"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _imported(node, module: str, is_package: bool, modules) -> list[str]:
    """The package modules an import statement loads: ``from A import b`` loads ``A.b`` when
    that is a module, else ``A``; a relative import is resolved against ``module``."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    base = node.module or ""
    if node.level:
        package = module.split(".") if is_package else module.split(".")[:-1]
        anchor = package[: len(package) - node.level + 1]
        base = ".".join(anchor + ([base] if base else []))
    return [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]


def import_graph(level) -> dict[str, set[str]]:
    """Edges between package modules mapped by ``level`` (a module name -> a node name)."""
    modules = _modules()
    edges: dict[str, set[str]] = {}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            for target in _imported(node, name, path.name == "__init__.py", modules):
                while target and target not in modules:  # jaxdiff.x.y where y is a name
                    target = target.rpartition(".")[0]
                if not target or target == "jaxdiff":
                    continue
                src, dst = level(name), level(target)
                if src != dst and src is not None and dst is not None:
                    edges.setdefault(src, set()).add(dst)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while not component or component[-1] != v:
                component.append(stack.pop())
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def _component(module: str) -> str | None:
    """``jaxdiff.train.loop`` -> ``train``; the package root itself -> None."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def test_no_import_cycle_between_modules():
    assert cycles(import_graph(lambda m: m)) == []


def test_no_import_cycle_between_components():
    assert cycles(import_graph(_component)) == []


def test_the_checker_finds_a_cycle_hidden_in_a_function():
    """The graph counts an import inside a function body: a known two-module cycle is found."""
    tree = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(tree) == [["a", "b", "c"]]
    source = "def f():\n    from jaxdiff import evaluate\n"
    node = next(n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.ImportFrom))
    assert _imported(node, "jaxdiff.train.loop", False, {"jaxdiff.evaluate": None}) == [
        "jaxdiff.evaluate"
    ]
