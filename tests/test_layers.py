"""The developers' guide's layering rules, enforced over the source tree itself.

Each rule is read from the code with :mod:`ast` (every import, including the ones
inside functions and under ``TYPE_CHECKING``), so a new module cannot slip past it.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("node", "protocol", "signing", "sync", "hasher")

ALLOWED: dict[str, tuple[str, ...]] = {
    # package -> the hashfed packages it may import (besides itself)
    "signing": (),
    "protocol": ("hashfed.signing",),
    "hasher": ("hashfed.protocol",),
    "sync": ("hashfed.protocol", "hashfed.signing"),
    "node": ("hashfed.protocol", "hashfed.signing", "hashfed.sync", "hashfed.hasher"),
}
"""The guide's dependency directions: one way, no cycles."""

NODE_LAYERS_FORBIDDEN: dict[str, tuple[str, ...]] = {
    # a layer of node/ -> the layers it must not import
    "store": ("http", "cli", "services", "match"),
    "match": ("http", "cli", "services"),
    "services": ("http", "cli"),
    "http": ("cli",),
}
"""Inside node/: storage at the bottom, commands and routes at the top."""

THIRD_PARTY_FORBIDDEN: dict[str, tuple[str, ...]] = {
    # hasher runs on a person's device; nothing of the server's machinery
    "hasher": ("numba", "llvmlite", "aiohttp", "sqlite3", "sqlite_utils"),
    "protocol": ("sqlite3", "sqlite_utils", "aiohttp"),
    "signing": ("sqlite3", "sqlite_utils", "aiohttp"),
    "sync": ("sqlite3", "sqlite_utils"),
}

SQL_METHODS = frozenset(
    {
        "execute",
        "executemany",
        "executescript",
        "rows_where",
        "upsert",
        "upsert_all",
        "insert_all",
        "backup",
        "iterdump",
        "create_table",
    }
)
"""sqlite3's and sqlite_utils' ways of running a statement (``db[...]`` is checked apart)."""

SQL_STATEMENT = re.compile(
    r"\s*(SELECT|INSERT|UPDATE|DELETE|CREATE|PRAGMA|DROP|ALTER|WITH|BEGIN|COMMIT|ROLLBACK"
    r"|SAVEPOINT|RELEASE|VACUUM|ATTACH)\s+[A-Za-z_*(]"
)
"""A string that starts like a statement: a keyword in capitals and more after it
(an HTTP method named alone, such as "DELETE", is not one)."""


@dataclass(frozen=True)
class Module:
    package: str
    layer: str | None
    path: Path
    tree: ast.Module

    @property
    def name(self) -> str:
        return str(self.path.relative_to(ROOT))


def modules() -> Iterator[Module]:
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT / package).parts
            layer = parts[0] if package == "node" and len(parts) > 1 else None
            yield Module(package, layer, path, ast.parse(path.read_text(), str(path)))


def imported(tree: ast.Module) -> Iterator[tuple[int, str]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module
            for alias in node.names:
                yield node.lineno, f"{node.module}.{alias.name}"


MODULES = list(modules())
LAYERED = [m for m in MODULES if m.layer in NODE_LAYERS_FORBIDDEN]
OUTSIDE_NODE = [m for m in MODULES if m.package in THIRD_PARTY_FORBIDDEN]
NODE_OUTSIDE_STORE = [m for m in MODULES if m.package == "node" and m.layer != "store"]


def module_id(module: Module) -> str:
    return module.name


@pytest.mark.parametrize("module", MODULES, ids=module_id)
def test_package_imports_point_one_way(module: Module) -> None:
    own = f"hashfed.{module.package}"
    allowed = (own, *ALLOWED[module.package])
    wrong = [
        f"{module.name}:{line} imports {name}"
        for line, name in imported(module.tree)
        if name.startswith("hashfed.")
        and not name.startswith(tuple(a + "." for a in allowed))
        and name not in allowed
    ]
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("module", LAYERED, ids=module_id)
def test_node_layers_point_down(module: Module) -> None:
    assert module.layer is not None
    forbidden = tuple(f"hashfed.node.{layer}" for layer in NODE_LAYERS_FORBIDDEN[module.layer])
    wrong = [
        f"{module.name}:{line} imports {name}"
        for line, name in imported(module.tree)
        if name.startswith(forbidden)
    ]
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("module", OUTSIDE_NODE, ids=module_id)
def test_device_and_protocol_code_import_no_server_machinery(module: Module) -> None:
    forbidden = THIRD_PARTY_FORBIDDEN[module.package]
    wrong = [
        f"{module.name}:{line} imports {name}"
        for line, name in imported(module.tree)
        if name.split(".")[0] in forbidden
    ]
    assert not wrong, "\n".join(wrong)


def sql_in(tree: ast.Module) -> Iterator[tuple[int, str]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr in SQL_METHODS:
                yield node.lineno, f"calls .{node.func.attr}()"
        elif (
            isinstance(node, ast.Subscript)
            and isinstance(node.value, ast.Name)
            and node.value.id == "db"
        ):
            yield node.lineno, "indexes a sqlite_utils database"
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and SQL_STATEMENT.match(node.value)
        ):
            yield node.lineno, f"holds SQL {node.value.strip().splitlines()[0][:40]!r}"


@pytest.mark.parametrize("module", NODE_OUTSIDE_STORE, ids=module_id)
def test_sql_only_in_node_store(module: Module) -> None:
    wrong = [f"{module.name}:{line} {what}" for line, what in sql_in(module.tree)]
    assert not wrong, "SQL belongs in node/store/:\n" + "\n".join(wrong)


def test_the_sql_detector_sees_each_way_of_running_a_statement() -> None:
    """The rule above would pass vacuously if the detector saw nothing: it sees these."""
    source = """
conn.execute("SELECT 1")
conn.executemany(query, rows)
db["bank"].insert_all(rows)
QUERY = "DELETE FROM bank WHERE idx = ?"
source.backup(target)
"""
    found = [what for _line, what in sql_in(ast.parse(source))]
    assert len(found) == 6, found
    assert not list(sql_in(ast.parse('METHODS = ("GET", "DELETE")\nrows.insert(0, x)')))
