"""The import rules of the package layout (README, "How it is built"), read from the
sources with `ast`.

Every import counts, at module level or inside a function: `domain` imports
nothing of ours; `manager` never imports `mysql` nor `agent` (it speaks to agents
through `protocol`, which imports only `rpc`, `names`, `domain` and `errors`);
`client`, `gui` and `router` import only `rpc` and `errors`; `mysql` and `cloud`
never import `rpc`; the shared modules beside the layers (names, context,
layout...) import only `errors`; and the top-level parts do not import each other
in a cycle.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = "conpaassql"
SOURCES = Path(__file__).resolve().parents[2] / "src" / PACKAGE

#: The modules beside the layers that several of them share: they stay neutral.
SHARED = ("errors", "config", "context", "files", "layout", "logs", "names", "net")

# part -> the parts of ours it may import (None: any); a part may always import itself.
ALLOWED: dict[str, frozenset[str] | None] = {
    "domain": frozenset(),
    "client": frozenset({"rpc", "errors"}),
    "gui": frozenset({"rpc", "errors"}),
    "router": frozenset({"rpc", "errors"}),
    # The agent protocol is the seam between manager and agents: both import it, it
    # imports neither of them.
    "protocol": frozenset({"rpc", "errors", "names", "domain"}),
    # The backup stores: a library the manager and the agents both use.
    "backup": frozenset({"errors", "files", "config", "domain"}),
    **{shared: frozenset({"errors"}) for shared in SHARED},
}
# part -> the parts of ours it must not import.
FORBIDDEN: dict[str, frozenset[str]] = {
    "manager": frozenset({"mysql", "agent"}),
    "mysql": frozenset({"rpc"}),
    "cloud": frozenset({"rpc"}),
}


def part_of(module: str) -> str:
    """`conpaassql.manager.api` -> `manager`; `conpaassql.errors` -> `errors`."""
    return module.split(".")[1]


def module_name(path: Path) -> str:
    relative = path.relative_to(SOURCES.parent).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(text: str, package: str) -> Iterator[tuple[str, int]]:
    """Every module a source imports, anywhere in it, with the line; `package` is the
    package the source lives in, to resolve relative imports."""
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base]) if base else ".".join(anchor)
            if base == PACKAGE:  # `from conpaassql import errors`
                for alias in node.names:
                    yield f"{PACKAGE}.{alias.name}", node.lineno
            else:
                yield base, node.lineno


def our_imports() -> list[tuple[str, str, int]]:
    """(importing module, imported module, line) for every import of ours under src."""
    found = []
    for path in sorted(SOURCES.rglob("*.py")):
        module = module_name(path)
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for target, line in imported_modules(path.read_text(), package):
            if target.startswith(PACKAGE + "."):
                found.append((module, target, line))
    return found


def violations(imports: list[tuple[str, str, int]]) -> list[str]:
    broken = []
    for source, target, line in imports:
        if source.count(".") < 1:
            continue  # conpaassql/__init__.py
        mine, theirs = part_of(source), part_of(target)
        if mine == theirs:
            continue
        allowed = ALLOWED.get(mine)
        if (allowed is not None and theirs not in allowed) or theirs in FORBIDDEN.get(
            mine, frozenset()
        ):
            broken.append(f"{source}:{line} imports {target}")
    return broken


def cycles(imports: list[tuple[str, str, int]]) -> list[list[str]]:
    """The groups of top-level parts (``manager``, ``cloud``...) that import each other
    in a cycle: each group's parts sorted, the groups in order."""
    graph: dict[str, set[str]] = {}
    for source, target, _ in imports:
        if source.count(".") >= 1 and part_of(source) != part_of(target):
            graph.setdefault(part_of(source), set()).add(part_of(target))

    def reached(start: str) -> set[str]:
        seen: set[str] = set()
        todo = [start]
        while todo:
            for following in graph.get(todo.pop(), ()):
                if following not in seen:
                    seen.add(following)
                    todo.append(following)
        return seen

    reach = {part: reached(part) for part in graph}
    groups = {tuple(sorted({part} | {other for other in reach[part]
                                     if part in reach.get(other, ())}))
              for part in graph if part in reach[part]}
    return sorted(list(group) for group in groups)


def test_the_sources_are_found() -> None:
    imports = our_imports()
    assert len({source for source, _, _ in imports}) > 50
    assert ("conpaassql.manager.app", "conpaassql.manager.store") in {
        (source, target) for source, target, _ in imports
    }


def test_every_part_imports_only_what_its_layer_may() -> None:
    broken = violations(our_imports())
    assert not broken, "imports across the layers:\n" + "\n".join(broken)


def test_the_parts_import_each_other_in_no_cycle() -> None:
    found = cycles(our_imports())
    assert not found, "parts importing each other:\n" + "\n".join(
        " <-> ".join(group) for group in found)


@pytest.mark.parametrize(
    ("source", "target"),
    [
        ("conpaassql.domain.node", "conpaassql.errors"),
        ("conpaassql.manager.api", "conpaassql.mysql.quoting"),
        ("conpaassql.gui.views", "conpaassql.manager.store"),
        ("conpaassql.client.cli", "conpaassql.config"),
        ("conpaassql.mysql.quoting", "conpaassql.rpc.types"),
        ("conpaassql.cloud.local", "conpaassql.rpc"),
        ("conpaassql.names", "conpaassql.rpc.types"),
        ("conpaassql.context", "conpaassql.cloud.base"),
        ("conpaassql.router.app", "conpaassql.manager.api"),
    ],
)
def test_a_forbidden_import_is_reported(source: str, target: str) -> None:
    assert violations([(source, target, 1)]) == [f"{source}:1 imports {target}"]


def test_an_allowed_import_is_not_reported() -> None:
    allowed = [
        ("conpaassql.gui.link", "conpaassql.rpc.client", 1),
        ("conpaassql.client.cli", "conpaassql.errors", 1),
        ("conpaassql.manager.api", "conpaassql.domain.node", 1),
        ("conpaassql.agent.api", "conpaassql.mysql.quoting", 1),
        ("conpaassql.manager.api", "conpaassql.names", 1),
        ("conpaassql.domain.node", "conpaassql.domain.states", 1),
    ]
    assert violations(allowed) == []


def test_a_cycle_between_parts_is_found() -> None:
    imports = [
        ("conpaassql.manager.api", "conpaassql.cloud.base", 1),
        ("conpaassql.cloud.base", "conpaassql.config", 1),
        ("conpaassql.config", "conpaassql.manager.store", 1),
    ]
    assert cycles(imports) == [["cloud", "config", "manager"]]
    assert cycles(imports[:2]) == []


def test_function_level_and_relative_imports_count() -> None:
    text = (
        "import os\n"
        "from conpaassql import errors\n"
        "def f() -> None:\n"
        "    from ..mysql import names\n"
        "    import conpaassql.rpc.types\n"
        "class C:\n"
        "    def g(self) -> None:\n"
        "        from .store import Store\n"
    )
    found = dict(imported_modules(text, "conpaassql.manager"))
    assert found == {
        "os": 1,
        "conpaassql.errors": 2,
        "conpaassql.mysql": 4,
        "conpaassql.rpc.types": 5,
        "conpaassql.manager.store": 8,
    }
