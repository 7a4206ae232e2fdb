"""The project's import graph from source (no imports run): module-level cycles and imports that run up a layer.

    python scripts/import_graph.py            # summary
    python scripts/import_graph.py --edges    # also every ctxcompress → ctxcompress edge

Layers, lowest first: ``ctxcompress`` (library) < ``ctxcompress_service``, ``langchain_ctxcompress``,
``llama_index`` (fronts) < ``ctxcompress_eval`` (evaluation). Imports inside functions are lazy (they run on first
use), so they count as edges but not toward module-level cycles.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

ROOTS = {
    "ctxcompress": Path("ctxcompress"),
    "ctxcompress_service": Path("service/ctxcompress_service"),
    "langchain_ctxcompress": Path("integrations/langchain_ctxcompress"),
    "llama_index": Path("integrations/llama_index"),
    "ctxcompress_ray": Path("integrations/ctxcompress_ray"),  # before the redesign (now ctxcompress/corpus)
    "ctxcompress_eval": Path("eval/ctxcompress_eval"),
}
LAYER = {"ctxcompress": 0, "ctxcompress_service": 1, "langchain_ctxcompress": 1, "llama_index": 1, "ctxcompress_ray": 1}
LAYER["ctxcompress_eval"] = 2


def modules() -> dict[str, Path]:
    found = {}
    for top, root in ROOTS.items():
        for path in sorted(root.rglob("*.py")) if root.exists() else []:
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join([top, *parts])] = path
    return found


def imports(path: Path, name: str, known: set[str]) -> list[tuple[str, bool]]:
    """``(imported project module, at module level?)`` for every import in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    top_level = {id(node) for node in tree.body}
    type_checking = set()
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            type_checking |= {id(n) for n in ast.walk(node)}
    out = []
    for node in ast.walk(tree):
        if id(node) in type_checking:
            continue
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                out.append((target, id(node) in top_level))
    return sorted(set(out))


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    sys.setrecursionlimit(10_000)

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edges", action="store_true")
    args = parser.parse_args()
    found = modules()
    edges = {name: imports(path, name, set(found)) for name, path in found.items()}
    # A package's __init__ importing its own submodules is how packages export; it is not a circle.
    eager = {name: {t for t, top in targets if top and not t.startswith(name + ".")} for name, targets in edges.items()}
    every = {name: {t for t, _ in targets if not t.startswith(name + ".")} for name, targets in edges.items()}
    upward = [
        (name, target)
        for name, targets in edges.items()
        for target, _ in targets
        if LAYER[target.split(".")[0]] > LAYER[name.split(".")[0]]
    ]
    n_edges = sum(len(t) for t in edges.values())
    print(f"{len(found)} modules, {n_edges} project import edges")
    print(f"module-level import cycles: {cycles(eager) or 'none'}")
    print(f"cycles counting lazy (in-function) imports too: {cycles(every) or 'none'}")
    print(f"imports from a lower layer to a higher one: {upward or 'none'}")
    if args.edges:
        for name in sorted(edges):
            for target, top in edges[name]:
                print(f"  {name} -> {target}{'' if top else '  (lazy)'}")


if __name__ == "__main__":
    main()
