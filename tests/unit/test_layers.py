"""The import map of docs/architecture.md, enforced: a package imports only packages of lower layers, and no
modules import each other in a circle. Imports inside functions count as much as those at the top of a module:
they are how a circle usually creeps back in."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: Lowest first. A package may import its own modules and those of any lower layer, never a package of its own
#: layer or a higher one.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("jumpcloud",),                             # the JumpCloud API client
    ("config",),                                # settings
    ("connector", "simulator"),                 # one syncer per resource type, the client factory; the simulator
    ("models",),                                # tables, store, history, name resolution, connector registration
    ("access", "auth", "telemetry"),            # access insight; API tokens and scopes; logs and metrics
    ("msp", "pipeline", "provisioning"),        # MSP discovery; a sync run and its parts; requests and actions
    ("worker",),                                # the Celery app, its signals, beat, the process's settings
    ("jumpsync",),                              # the Python interface: submit a request
    ("httpapi",),                               # the HTTP API: the same, for tokens and their scopes
    ("tasks",),                                 # thin Celery tasks
    ("cli",),                                   # the jumpsync command
)
LAYER_OF = {package: level for level, packages in enumerate(LAYERS) for package in packages}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(path: Path) -> set[str]:
    """Every module path an ``import`` or ``from … import`` in the file may name (``from a import b``: ``a`` and
    ``a.b``, since ``b`` may be a module), limited to jumpsync's own packages."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in names if name.split(".")[0] in LAYER_OF}


def import_graph() -> dict[str, set[str]]:
    files = [path for package in LAYER_OF for path in sorted((ROOT / package).rglob("*.py"))]
    modules = {module_name(path): path for path in files}
    return {name: {target for target in imported_names(path) if target in modules and target != name}
            for name, path in modules.items()}


def test_every_top_level_package_has_a_layer():
    packages = {path.parent.name for path in ROOT.glob("*/__init__.py")} - {"tests", "bench", "scripts"}
    assert packages == set(LAYER_OF), "add the new package to LAYERS (and to docs/architecture.md)"


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    """``a.x imports b.y`` for each import from one package into another of the same or a higher layer."""
    return sorted(f"{source} imports {target}" for source, targets in graph.items() for target in targets
                  if source.split(".")[0] != target.split(".")[0]
                  and LAYER_OF[target.split(".")[0]] >= LAYER_OF[source.split(".")[0]])


def test_no_package_imports_its_own_layer_or_a_higher_one():
    assert layer_violations(import_graph()) == []


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iteratively: the groups of modules that reach each other (circles)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, targets = work[-1]
            for target in targets:
                if target not in index:
                    index[target] = low[target] = len(index)
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(sorted(graph[target]))))
                    break
                if target in on_stack:
                    low[node] = min(low[node], index[target])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    group = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.append(member)
                        if member == node:
                            break
                    if len(group) > 1:
                        found.append(sorted(group))
    return found


def test_no_modules_import_each_other_in_a_circle():
    # A package's __init__ that imports its own modules is no circle of meaning; leave those edges out.
    graph = {source: {target for target in targets if not source.startswith(f"{target}.")}
             for source, targets in import_graph().items()}
    assert strongly_connected(graph) == []


def test_the_checks_see_a_circle_and_a_wrong_layer():
    """The checks themselves: a made-up circle is found, and so is a low package importing a high one."""
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert strongly_connected({"a": {"b"}, "b": set()}) == []
    assert layer_violations({"models.store": {"worker.runtime", "models.tables"}, "cli.main": {"models.db"},
                             "config.settings": {"connector.users"}}) == [
        "config.settings imports connector.users", "models.store imports worker.runtime"]
