"""The import graph of imgsim's modules, counting imports inside functions too: no cycles, and
no package imports one in a higher layer."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"

# The pipeline, lowest first: a package may import its own modules and those of any package
# before it, never one after it. Each package's docstring repeats its line of this order.
LAYERS = (
    "core",  # settings, errors, image names, crash-safe writes, stopping
    "files",  # the image folder: walking, file facts, change lock, trash, uploads, renames
    "images",  # decoding images, the dataset of a folder
    "model",  # the network, its model file, device, export, calibration, the embedder
    "store",  # the vector store: one interface, FAISS + SQLite or Milvus
    "train",  # training a model on a folder
    "explore",  # views of the embeddings: map, projection, duplicates
    "embed",  # indexing a folder: extract, update, watch, Ray
    "search",  # answering queries, changing the collection
    "web",  # the Flask app and server
    "cli",  # the imgsim command
)


def _modules() -> dict[str, Path]:
    found = {}
    for path in (SRC / "imgsim").rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The imgsim modules `name` imports anywhere, outside `if TYPE_CHECKING:` blocks."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    out: set[str] = set()
    for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name in modules)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            target = ".".join([*base, *([node.module] if node.module else [])])
            subs = {f"{target}.{a.name}" for a in node.names} & set(modules)
            out.update(subs or ({target} & set(modules)))
    out.discard(name)
    return out


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    nodes, todo = [], [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            todo.extend(node.orelse)
            continue
        nodes.append(node)
        todo.extend(ast.iter_child_nodes(node))
    return nodes


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as a path of module names, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = 2
        path.pop()
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_no_module_imports_one_that_imports_it_back() -> None:
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    assert "imgsim.train.trainer" in graph["imgsim.train.train"]  # the graph sees imports at all
    assert "imgsim.train.plots" in graph["imgsim.train.train"]  # and those inside functions
    cycle = _cycle(graph)
    assert cycle is None, " -> ".join(cycle or [])


def _layer(module: str) -> int:
    """The layer of an imgsim module: its package's place in LAYERS (`imgsim` itself: 0)."""
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 else 0


def _upward(graph: dict[str, set[str]]) -> list[str]:
    """Every import of a module in a higher layer than the importer's, as `a -> b`."""
    return sorted(
        f"{name} -> {target}"
        for name, targets in graph.items()
        for target in targets
        if _layer(target) > _layer(name)
    )


def test_every_module_is_in_a_layer() -> None:
    loose = [m for m in _modules() if m != "imgsim" and m.split(".")[1] not in LAYERS]
    assert not loose, f"modules outside the packages of LAYERS: {loose}"


def test_no_package_imports_a_higher_one() -> None:
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    assert "imgsim.core.config" in graph["imgsim.cli.commands"]  # the graph sees imports at all
    upward = _upward(graph)
    assert not upward, "lower layers import higher ones:\n" + "\n".join(upward)


def test_an_upward_import_is_found() -> None:
    graph = {
        "imgsim.core.config": set(),
        "imgsim.search.searcher": {"imgsim.core.config", "imgsim.images.data"},
        "imgsim.images.data": {"imgsim.core.config", "imgsim.search.searcher"},  # planted
    }
    assert _upward(graph) == ["imgsim.images.data -> imgsim.search.searcher"]
    del graph["imgsim.images.data"]
    assert _upward(graph) == []


def test_a_cycle_is_found() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
