"""The import graph, read from the source with ast: no cycles, model/ stays architecture only, no hidden imports.

The graph has one node per module of src/clipforge. An edge A -> B is an import statement in A of B (or of a
name in B); importing ``clipforge.x.y`` also runs the package ``clipforge.x``, so that is an edge too. Imports
under ``if TYPE_CHECKING:`` never run and are not edges, nor is the implicit import of a module's own parent
package (it is initialized before the module runs). Imports inside functions are edges as well: a cycle held
together by a function-level import is still a cycle, only a hidden one.

A subpackage is ``clipforge.<name>`` with everything below it; the top-level modules (``clipforge.pipeline``,
``clipforge.checkpoint`` ...) are one node each. Run this file with ``-s`` to see the graph's summary.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
ROOT = "clipforge"
# model/ holds architecture only: torch, the standard library and these.
MODEL_MAY_IMPORT = ("torch", "clipforge.model", "clipforge.errors")
# Module cycles that exist today and are being removed; a new one fails, and so does one listed here once it
# is gone (delete its line then). Each is a sorted tuple of module names.
KNOWN_MODULE_CYCLES: set[tuple[str, ...]] = set()
# The CLI verbs import their job inside ``run`` so that ``clipforge --help`` never imports torch.
DEFERRED_OK = "clipforge/commands/"


@dataclass(frozen=True)
class Import:
    module: str  # the importing module
    target: str  # the clipforge module imported (or the top-level name of a third-party one)
    line: int
    in_function: bool
    block: tuple[int, int] = (0, 0)  # first and last line of the run of import statements it belongs to


def modules() -> dict[str, Path]:
    """Every module of the package: dotted name -> file."""
    out = {}
    for path in sorted((SRC / ROOT).rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _resolve(name: str, known: dict[str, Path]) -> str:
    """The longest prefix of ``name`` that is a module (``from a.b import c`` may name a module or a function)."""
    while name not in known and "." in name:
        name = name.rpartition(".")[0]
    return name


def imports_of(module: str, path: Path, known: dict[str, Path]) -> Iterator[Import]:
    """The import statements of one module that run (not under TYPE_CHECKING), each target resolved."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]

    def targets(node: ast.Import | ast.ImportFrom) -> Iterator[str]:
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
            return
        if node.level:
            base = package.split(".")[: len(package.split(".")) - node.level + 1]
            stem = ".".join(base + ([node.module] if node.module else []))
        else:
            stem = node.module or ""
        for alias in node.names:
            yield f"{stem}.{alias.name}"

    def walk(nodes: list[ast.stmt], in_function: bool) -> Iterator[Import]:
        run: list[ast.stmt] = []  # consecutive import statements: one comment above them covers them all
        for k, node in enumerate(nodes):
            if isinstance(node, ast.If) and _is_type_checking(node):
                yield from walk(node.orelse, in_function)
                continue
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                run = run if run and run[-1] is nodes[k - 1] else []
                run.append(node)
                end = k
                while end + 1 < len(nodes) and isinstance(nodes[end + 1], (ast.Import, ast.ImportFrom)):
                    end += 1
                block = (run[0].lineno, nodes[end].end_lineno or nodes[end].lineno)
                for target in targets(node):
                    name = _resolve(target, known) if target.split(".")[0] == ROOT else target.split(".")[0]
                    yield Import(module, name, node.lineno, in_function, block)
                continue
            inner = in_function or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            for field in ("body", "orelse", "finalbody"):
                yield from walk(getattr(node, field, None) or [], inner)
            for handler in getattr(node, "handlers", None) or []:
                yield from walk(handler.body, inner)
            for case in getattr(node, "cases", None) or []:
                yield from walk(case.body, inner)

    yield from walk(ast.parse(path.read_text(encoding="utf-8")).body, False)


def all_imports() -> list[Import]:
    known = modules()
    return [imp for module, path in known.items() for imp in imports_of(module, path, known)]


def module_graph(imports: list[Import], include_functions: bool = True) -> dict[str, set[str]]:
    """Module -> the clipforge modules it runs (its targets and their parent packages)."""
    graph: dict[str, set[str]] = {m: set() for m in modules()}
    for imp in imports:
        if imp.target.split(".")[0] != ROOT or (imp.in_function and not include_functions):
            continue
        parts = imp.target.split(".")
        for i in range(2, len(parts) + 1):  # importing a.b.c runs a.b's __init__ too (the root's is lazy)
            name = ".".join(parts[:i])
            # A module's own packages are initialized before it runs: only naming one explicitly is an edge.
            implicit_ancestor = i < len(parts) and imp.module.startswith(name + ".")
            if name != imp.module and not implicit_ancestor:
                graph[imp.module].add(name)
    return graph


def subpackage(module: str) -> str:
    return ".".join(module.split(".")[:2])


def subpackage_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for a, targets in graph.items():
        for b in targets:
            if subpackage(a) != subpackage(b):
                out.setdefault(subpackage(a), set()).add(subpackage(b))
    return out


def cycles(graph: dict[str, set[str]]) -> list[tuple[str, ...]]:
    """The strongly connected components with more than one node (Tarjan), each sorted, sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[tuple[str, ...]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
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
                found.append(tuple(sorted(component)))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def edges_within(graph: dict[str, set[str]], component: tuple[str, ...]) -> list[str]:
    return [f"{a} -> {b}" for a in component for b in sorted(graph.get(a, ())) if b in component]


def summary() -> str:
    """What the tests below check, as text (printed with ``pytest -s``)."""
    imports = all_imports()
    lines = []
    for label, include in (("module-level imports", False), ("all imports, in-function included", True)):
        graph = module_graph(imports, include)
        sub = subpackage_graph(graph)
        lines.append(f"{label}: {len(cycles(sub))} cycles between subpackages {cycles(sub)}; "
                     f"{len(cycles(graph))} between modules {cycles(graph)}")  # fmt: skip
    own = [i for i in imports if i.in_function and i.target.split(".")[0] == ROOT]
    lines.append(f"in-function imports of clipforge modules: {len({(i.module, i.line) for i in own})} statements")
    return "\n".join(lines)


def test_print_summary():
    print("\n" + summary())


def test_no_cycles_between_subpackages():
    graph = module_graph(all_imports())
    sub = subpackage_graph(graph)
    found = cycles(sub)
    detail = {c: edges_within(sub, c) for c in found}
    assert not found, f"import cycles between subpackages: {detail}"


def test_no_new_cycles_between_modules():
    graph = module_graph(all_imports())
    found = set(cycles(graph))
    new = {c: edges_within(graph, c) for c in found - KNOWN_MODULE_CYCLES}
    assert not new, f"new import cycles between modules: {new}"
    gone = KNOWN_MODULE_CYCLES - found
    assert not gone, f"these cycles are gone: delete them from KNOWN_MODULE_CYCLES: {gone}"


def test_model_imports_only_torch_and_model():
    bad = []
    for imp in all_imports():
        if not imp.module.startswith(f"{ROOT}.model"):
            continue
        top = imp.target.split(".")[0]
        allowed = top in sys.stdlib_module_names or any(
            imp.target == a or imp.target.startswith(a + ".") for a in MODEL_MAY_IMPORT
        )
        if not allowed:
            bad.append(f"{imp.module}:{imp.line} imports {imp.target}")
    assert not bad, f"model/ holds architecture only (torch, clipforge.model, clipforge.errors): {bad}"


def test_imports_inside_functions_are_deferred_on_purpose():
    """An import inside a function defers an optional or heavy dependency, and a comment says so.

    Only the CLI verbs (commands/) import clipforge modules inside functions: their jobs import torch.
    """
    known = modules()
    hidden, uncommented = [], []
    for imp in all_imports():
        if not imp.in_function:
            continue
        path = known[imp.module]
        rel = path.relative_to(SRC).as_posix()
        if imp.target.split(".")[0] == ROOT and not rel.startswith(DEFERRED_OK):
            hidden.append(f"{rel}:{imp.line} imports {imp.target}")
        lines = path.read_text(encoding="utf-8").splitlines()
        first, last = imp.block
        if not any("#" in text for text in lines[first - 2 : last]):  # the line above the run, and the run
            uncommented.append(f"{rel}:{imp.line} ({imp.target})")
    assert not hidden, f"import these at the top of the file: {sorted(set(hidden))}"
    assert not uncommented, f"in-function imports need a comment saying why they are deferred: {uncommented}"

