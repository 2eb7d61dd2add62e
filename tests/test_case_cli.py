"""``hashfed case`` (the person, over HTTP) and ``hashfed cases`` (the operator), in-process."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
from pathlib import Path

import pytest
from aiohttp import web
from click.testing import CliRunner
from hashfed.node.cli.case import check_publisher_url
from hashfed.node.cli.main import main
from hashfed.node.http.cases import PIN_HEADER
from test_case_api import desk_server, pdq

VECTORS = Path(__file__).resolve().parents[1] / ".." / "shared" / "vectors" / "pdq" / "images"
PHOTOS = [VECTORS / "pen-and-coaster.png", VECTORS / "bridge-mods" / "aaa-orig.jpg"]


def invoke(*args: str, env: dict[str, str] | None = None, stdin: str | None = None):
    return CliRunner().invoke(main, list(args), env=env, input=stdin, catch_exceptions=False)


@pytest.mark.skipif(not all(p.exists() for p in PHOTOS), reason="shared vectors not present")
async def test_person_opens_checks_and_withdraws_from_the_command_line(tmp_path: Path) -> None:
    photos = []
    for photo in PHOTOS:
        photos.append(tmp_path / photo.name)
        shutil.copy(photo, photos[-1])
    async with desk_server(tmp_path) as d:
        run = asyncio.to_thread
        done = await run(invoke, "case", "open", *map(str, photos), "--publisher", d.url)
        assert done.exit_code == 0, done.output
        assert "cannot be recovered" in done.output
        number = re.search(r"case number: (HF-[0-9A-Z-]+)", done.output)
        pin = re.search(r"PIN:\s+(\d{10})", done.output)
        assert number and pin
        stored = d.node.db.conn.execute("SELECT kind, hex(hash) FROM case_hashes").fetchall()
        assert sorted(h.lower() for _, h in stored) == sorted(
            [
                "1f811b9d267fbc6693c0c7f30e041f9df49b836303e10f067fcdfc12c02d01f9",
                "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22",
            ]
        )

        env = {"HASHFED_CASE_PIN": pin.group(1)}
        done = await run(
            invoke, "case", "status", number.group(1), "--publisher", d.url, "--json", env=env
        )
        assert done.exit_code == 0, done.output
        assert json.loads(done.output)["state"] == "pending"

        home = str(d.node.config.home)
        listed = await run(invoke, "--dir", home, "cases", "list", "--json")
        assert listed.exit_code == 0, listed.output
        assert [r["state"] for r in json.loads(listed.output)] == ["pending"]
        assert number.group(1) not in listed.output
        published = await run(invoke, "--dir", home, "cases", "publish")
        assert "published 2 hashes of 1 case " in published.output

        # The PIN may come from a hidden prompt instead of the environment.
        done = await run(
            invoke, "case", "status", number.group(1), "--publisher", d.url, stdin="1234509876\n"
        )
        assert done.exit_code == 1 and "no case has this case number and PIN" in done.output

        done = await run(
            invoke, "case", "withdraw", number.group(1), "--publisher", d.url, env=env, stdin="n\n"
        )
        assert done.exit_code == 1  # aborted at the confirmation
        done = await run(
            invoke, "case", "withdraw", number.group(1), "--publisher", d.url, "--yes", env=env
        )
        assert done.exit_code == 0, done.output
        assert "withdrawn" in done.output


async def test_open_refuses_files_without_a_publishable_hash(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not an image")
    async with desk_server(tmp_path) as d:
        done = await asyncio.to_thread(
            invoke, "case", "open", str(tmp_path / "notes.txt"), "--publisher", d.url
        )
        assert done.exit_code == 1 and "nothing was sent" in done.output
        assert d.node.db.conn.execute("SELECT count(*) FROM cases").fetchone()[0] == 0


async def test_operator_reviews_cases(tmp_path: Path) -> None:
    async with desk_server(tmp_path, review=True) as d:
        await d.open(pdq(1, 1))
        await d.open(pdq(2, 1))
        home = str(d.node.config.home)
        rows = json.loads(
            (await asyncio.to_thread(invoke, "--dir", home, "cases", "list", "--json")).output
        )
        assert [r["state"] for r in rows] == ["review", "review"]
        assert "approved" in invoke("--dir", home, "cases", "approve", rows[0]["id"]).output
        assert "rejected" in invoke("--dir", home, "cases", "reject", rows[1]["id"]).output
        again = CliRunner().invoke(main, ["--dir", home, "cases", "approve", rows[1]["id"]])
        assert again.exit_code == 1 and "not waiting for review" in again.output
        unknown = CliRunner().invoke(main, ["--dir", home, "cases", "reject", "c000"])
        assert unknown.exit_code == 1 and "no case with id" in unknown.output
        table = invoke("--dir", home, "cases", "list", "--state", "pending").output
        assert rows[0]["id"] in table and rows[1]["id"] not in table


def test_operator_commands_need_a_publisher(tmp_path: Path) -> None:
    home = str(tmp_path / "partner")
    assert invoke("--dir", home, "init", "--origin", "partner.test/hashfed").exit_code == 0
    done = CliRunner().invoke(main, ["--dir", home, "cases", "list"])
    assert done.exit_code == 1 and "publisher" in done.output


@pytest.mark.parametrize(
    "publisher",
    ["http://desk.example", "http://10.0.0.1:8080", "ftp://desk.example", "desk.example"],
)
def test_case_commands_refuse_http_to_other_hosts(publisher: str) -> None:
    done = CliRunner().invoke(
        main,
        ["case", "status", "HF-" + "-".join(["1ABC"] * 6) + "-DE", "--publisher", publisher],
        env={"HASHFED_CASE_PIN": "a-pin-never-sent"},
    )
    assert done.exit_code == 1 and "https://" in done.output


@pytest.mark.parametrize(
    "url",
    [
        "https://desk.example",
        "http://127.0.0.1:1",
        "http://127.9.9.9",
        "http://[::1]:8",
        "http://localhost",
    ],
)
def test_https_and_loopback_publishers_are_accepted(url: str) -> None:
    check_publisher_url(url + "/v1/cases")


async def test_case_commands_refuse_redirects_and_keep_the_pin(tmp_path: Path) -> None:
    seen: list[str | None] = []

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound(f"http://127.0.0.1:{request.url.port}/elsewhere")

    async def elsewhere(request: web.Request) -> web.Response:
        seen.append(request.headers.get(PIN_HEADER))
        return web.json_response({"state": "active"})

    app = web.Application()
    app.router.add_route("*", "/v1/cases/{tail:.*}", redirect)
    app.router.add_route("*", "/elsewhere", elsewhere)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        done = await asyncio.to_thread(
            CliRunner().invoke,
            main,
            ["case", "status", "HF-" + "-".join(["1ABC"] * 6) + "-DE", "--publisher", url],
            env={"HASHFED_CASE_PIN": "a-pin-never-sent"},
        )
    finally:
        await runner.cleanup()
    assert done.exit_code == 1 and "redirect" in done.output, done.output
    assert seen == []
