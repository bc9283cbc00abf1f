"""The import structure stays layered: no import cycles, libraries never import the suite.

The graph is built statically with `ast` from every `import` in the first-party packages,
including imports inside functions (a lazy import still ties two modules together, and
"works because it is lazy" is how cycles creep in) but not those under
`if TYPE_CHECKING:`, which never run. An edge goes to the module an import names:
`from a.b import c` → `a.b.c` when that is a module, else `a.b`. The implicit import of
parent packages is not an edge (a package's `__init__` importing its own submodules is
not a cycle).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: First-party packages whose modules are nodes of the graph.
PACKAGES = ("suite", "model_zoo", "data_order", "sweeps", "hydra_plugins")
#: Libraries of the suite: they must not import `suite`, nor each other.
LIBRARIES = ("data_order", "model_zoo")


def _modules() -> dict[str, tuple[Path, bool]]:
    """Module name -> (file, is a package), for every .py file of PACKAGES."""
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            if is_package:
                parts = parts[:-1]
            found[".".join(parts)] = (path, is_package)
    return found


MODULES = _modules()


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(name: str, path: Path, is_package: bool) -> set[str]:
    """First-party modules `name` imports (anywhere in the file but TYPE_CHECKING blocks)."""
    package = name if is_package else name.rpartition(".")[0]
    targets: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the importing module's package
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for alias in node.names:
                submodule = f"{module}.{alias.name}"
                targets.add(submodule if submodule in MODULES else module)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(), filename=str(path)))
    return {t for t in targets if t in MODULES and t != name}


GRAPH = {name: _imports(name, *where) for name, where in MODULES.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        components.append(sorted(component))
    return components


def _path(graph: dict[str, set[str]], start: str, goal: str) -> list[str]:
    """A shortest import chain start → … → goal, for the failure message."""
    previous = {start: start}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(graph[node]):
                if child not in previous:
                    previous[child] = node
                    following.append(child)
        frontier = following
    chain = [goal]
    while chain[-1] != start:
        chain.append(previous[chain[-1]])
    return chain[::-1]


def test_graph_sees_the_packages_and_lazy_imports():
    # Guards the test itself: every package was found, and a function-level import counts.
    for package in ("suite", "suite.publish", "model_zoo", "data_order"):
        assert package in MODULES
    assert "suite.publish.hub_store" in GRAPH["suite.publish.store"]  # imported in open_store
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_first_party_imports_are_acyclic():
    cycles = _cycles(GRAPH)
    shown = []
    for component in cycles:  # the modules involved, and one closed import chain among them
        first, second = component[0], component[1]
        chain = [*_path(GRAPH, first, second), *_path(GRAPH, second, first)[1:]]
        shown.append(f"{', '.join(component)}: {' -> '.join(chain)}")
    assert not cycles, "import cycles:\n" + "\n".join(shown)


@pytest.mark.parametrize("library", LIBRARIES)
def test_libraries_never_import_the_suite_or_each_other(library):
    others = [p for p in PACKAGES if p != library]
    leaks = {
        name: sorted(t for t in targets if t.split(".")[0] in others)
        for name, targets in GRAPH.items()
        if name.split(".")[0] == library
    }
    leaks = {name: targets for name, targets in leaks.items() if targets}
    assert not leaks, f"{library} imports other first-party packages: {leaks}"


def test_suite_publish_does_not_depend_on_the_suite_config():
    # suite.config imports suite.publish.spec/retry (its default store, its retry rules);
    # the reverse edge would close a cycle, so the publish package stays below the config.
    for name, targets in GRAPH.items():
        if name.startswith("suite.publish"):
            assert "suite.config" not in targets, name


PUBLISH_MODULES = sorted(name for name in MODULES if name.split(".")[:2] == ["suite", "publish"])


@pytest.mark.parametrize("module", PUBLISH_MODULES)
def test_each_publish_module_imports_alone(module):
    done = subprocess.run(
        [sys.executable, "-c", f"import {module}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]


def test_store_and_config_imports_stay_light():
    # `suite` commands on a local store start fast: huggingface_hub only for hub specs,
    # torch never for opening a store or reading the config.
    script = (
        "import sys, suite.config, suite.publish.store, suite.publish.publisher; "
        "print(sorted(m for m in ('torch', 'huggingface_hub', 'transformers') "
        "if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "[]"


def test_tests_share_helpers_not_each_other_and_never_edit_sys_path():
    tests = ROOT / "tests"
    modules = {path.stem for path in tests.glob("test_*.py")}
    for path in sorted(tests.glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                names = []
            assert not set(names) & modules, f"{path.name} imports a test module: {names}"
            if isinstance(node, ast.Attribute) and node.attr == "path":
                owner = node.value
                assert not (isinstance(owner, ast.Name) and owner.id == "sys"), (
                    f"{path.name}:{node.lineno} touches sys.path (pytest puts tests/ on it)"
                )
