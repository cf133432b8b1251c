"""The floor plan: each stage's package imports only the layers below it, no module imports itself back
through another (lazy imports count), and no module outgrows what a reader takes in at once."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "pipeline"
MAX_LINES = 350

# What each part of `pipeline` may import, bottom up: the store knows neither stage; stage one (extract) never
# imports training, reports or next-frame code; reports read run files (runs), not training code; predict is the
# one place that uses both stages; benchmarks use anything below the command line, which sits on top.
BELOW = {
    "core": set(),
    "store": {"core"},
    "runs": {"core"},
    "dataset": {"core", "runs"},
    "extract": {"core", "dataset", "store"},
    "report": {"core", "runs"},
    "classify": {"core", "store", "runs", "report"},
    "nextframe": {"core", "runs", "report"},
    "predict": {"core", "dataset", "store", "extract", "classify", "runs", "report"},
}
BELOW["bench"] = set(BELOW) | {"nextframe"}
BELOW["cli"] = BELOW["bench"] | {"bench"}
BELOW["__main__"] = {"cli"}


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that `name` imports anywhere in its source (top level or inside functions)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([node.module] if node.module else []))
            candidates = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for candidate in candidates:
            while candidate and candidate not in known:
                candidate = candidate.rpartition(".")[0]
            if candidate and candidate != name and candidate != "pipeline":
                targets.add(candidate)
    return targets


def graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports(name, path, set(found)) for name, path in found.items()}


def part(module: str) -> str:
    return module.split(".")[1] if module.count(".") else "pipeline"


def test_every_part_imports_only_the_layers_below_it():
    crossings = sorted(
        f"{module} imports {target}"
        for module, targets in graph().items()
        for target in targets
        if part(module) != part(target) and part(module) != "pipeline" and part(target) not in BELOW[part(module)]
    )
    assert crossings == []


def test_every_module_belongs_to_a_known_part():
    assert {part(module) for module in modules()} - {"pipeline"} == set(BELOW)


def test_no_import_circles():
    edges = graph()
    circles = []
    index, low, stack, on_stack = {}, {}, [], set()

    def visit(node):  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in edges[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for node in edges:
        if node not in index:
            visit(node)
    assert circles == []


def test_no_module_outgrows_a_reading():
    long = {name: n for name, path in modules().items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_the_checker_sees_lazy_and_relative_imports(tmp_path):
    """The graph must see an import inside a function, or the layer rule could be dodged by hiding one there."""
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from pipeline.classify import train\n    from ..store import layout\n")
    found = imports("pipeline.extract.m", source, {"pipeline.classify.train", "pipeline.store.layout"})
    assert found == {"pipeline.classify.train", "pipeline.store.layout"}


def test_every_folder_of_the_package_is_a_regular_package():
    """An installed (not editable) package holds only folders with an `__init__.py` (setuptools' find_packages)."""
    folders = {path.parent for path in PACKAGE.rglob("*.py") if "__pycache__" not in path.parts}
    assert sorted(str(f.relative_to(PACKAGE)) for f in folders if not (f / "__init__.py").is_file()) == []
