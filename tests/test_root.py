"""The composition root (node/root.py): what it wires for each kind of node, and that
the app's cleanup contexts close everything it opened."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from aiohttp import web
from hashfed.node.config import ServerConfig
from hashfed.node.root import ServingNode, replica_node, writer_node
from synchelpers import make_node


def _paths(built: ServingNode) -> set[str]:
    return {route.resource.canonical for route in built.app.router.routes() if route.resource}


async def _run_and_stop(built: ServingNode) -> None:
    runner = web.AppRunner(built.app, handle_signals=False)
    await runner.setup()  # the background loops start, and wait for a bind that never comes
    await runner.cleanup()


async def test_a_publisher_serves_the_case_desk_and_closes_its_connections(
    tmp_path: Path,
) -> None:
    node = make_node(tmp_path, "p", "publisher")
    built = writer_node(node, ServerConfig(), sync=False)
    paths = _paths(built)
    assert {"/v1/cases", "/witness/add-checkpoint", "/metrics", "/v1/match"} <= paths
    assert "/v1/feedback" in paths
    await _run_and_stop(built)
    with pytest.raises(sqlite3.ProgrammingError):
        built.conn.execute("SELECT 1")
    with pytest.raises(sqlite3.ProgrammingError):
        node.db.conn.execute("SELECT 1")


async def test_a_partner_has_no_case_desk(tmp_path: Path) -> None:
    node = make_node(tmp_path, "a")
    built = writer_node(node, ServerConfig(), sync=False)
    paths = _paths(built)
    assert {"/witness/add-checkpoint", "/v1/feedback"} <= paths and "/v1/cases" not in paths
    await _run_and_stop(built)


async def test_a_replica_serves_nothing_that_writes(tmp_path: Path) -> None:
    p = make_node(tmp_path, "p", "publisher")
    built = replica_node(p.config, ServerConfig())
    paths = _paths(built)
    assert "/v1/match" in paths and "/metrics" in paths
    assert not paths & {"/witness/add-checkpoint", "/v1/cases", "/v1/feedback"}
    await _run_and_stop(built)
    with pytest.raises(sqlite3.ProgrammingError):
        built.conn.execute("SELECT 1")
