"""``hashfed case`` (for the person: open, status, withdraw) and ``hashfed cases`` (the operator).

The ``case`` commands talk to a publisher's case desk over HTTP and need no node
directory. Files are hashed on this device; only their hashes are sent. The PIN
is read from ``HASHFED_CASE_PIN`` or a hidden prompt, never from the command
line (where other users and shell history could see it).

The ``cases`` commands run on the publisher's node directory: list the cases,
approve or reject those held for review, and publish the pending batch now.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import click
from hashfed.hasher import FileError, Result, hash_paths
from hashfed.node.cli.output import emit, output_options, plural
from hashfed.node.cli.witness import push_now
from hashfed.node.home import open_node
from hashfed.node.http.cases import CASES_PATH, PIN_HEADER
from hashfed.node.services.casedesk import MAX_CASE_HASHES, STATES, CaseDesk, open_case_desk

PIN_ENV = "HASHFED_CASE_PIN"
PUBLISHER_ENV = "HASHFED_PUBLISHER"
TIMEOUT = 60

_publisher_option = click.option(
    "--publisher",
    required=True,
    envvar=PUBLISHER_ENV,
    help=f"The publisher's case desk, e.g. https://hashfed.stopncii.example (or {PUBLISHER_ENV}).",
)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """Refuses every redirect: following one would send the PIN header to another URL."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: Any,
        code: int,
        msg: str,
        headers: Any,
        newurl: str,
    ) -> urllib.request.Request | None:
        raise click.ClickException(
            f"the case desk answered with a redirect ({code}) to {newurl}; it is not "
            "followed, so that the PIN goes nowhere else: give --publisher the desk's own URL"
        )


_OPENER = urllib.request.build_opener(_NoRedirects)


def _is_loopback(host: str) -> bool:
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_publisher_url(url: str) -> None:
    """Refuses a case desk URL that is not https (http only to this machine)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname and _is_loopback(parts.hostname):
        return
    raise click.ClickException(
        f"--publisher must be an https:// URL (http:// only for this machine), not {url!r}: "
        "the case number and PIN must not cross the network in the clear"
    )


def _request(
    publisher: str, method: str, path: str, body: Any = None, pin: str | None = None
) -> dict[str, Any]:
    """Sends one JSON request to the case desk; returns the JSON answer or raises ClickException.

    Redirects are refused, and the URL must be https unless it names a loopback host.
    """
    url = publisher.rstrip("/") + path
    check_publisher_url(url)
    headers = {"Accept": "application/json"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    if pin is not None:
        headers[PIN_HEADER] = pin
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with _OPENER.open(request, timeout=TIMEOUT) as response:
            try:
                answer: dict[str, Any] = json.loads(response.read())
            except (ValueError, RecursionError):
                raise click.ClickException("the case desk's answer is not JSON") from None
            return answer
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read())["error"]
        except (ValueError, KeyError, TypeError, RecursionError):
            message = exc.reason
        retry = exc.headers.get("Retry-After")
        raise click.ClickException(
            f"the case desk refused ({exc.code}): {message}"
            + (f" (retry after {retry} s)" if retry and str(retry) not in str(message) else "")
        ) from None
    except (urllib.error.URLError, OSError) as exc:
        raise click.ClickException(f"cannot reach the case desk at {publisher}: {exc}") from None


def _read_pin(confirm: bool = False) -> str:
    pin = os.environ.get(PIN_ENV)
    if pin:
        return pin
    prompt = "Choose a PIN (at least 8 characters)" if confirm else "PIN"
    value: str = click.prompt(prompt, hide_input=True, confirmation_prompt=confirm, err=True)
    return value


def _case_path(number: str, tail: str = "") -> str:
    return f"{CASES_PATH}/{urllib.parse.quote(number.strip(), safe='')}{tail}"


def _hash_files(paths: tuple[Path, ...]) -> list[dict[str, Any]]:
    """Hashes paths here; returns the publishable hashes, or raises ClickException."""
    hashes: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    failed, skipped = [], []
    for outcome in hash_paths(paths):
        if isinstance(outcome, FileError):
            failed.append(f"{outcome.path}: {outcome.error}")
            continue
        assert isinstance(outcome, Result)
        if not outcome.publishable:
            skipped.append(
                f"{outcome.path}: too little detail to match reliably (PDQ quality "
                f"{outcome.quality}); left out"
            )
            continue
        if (outcome.kind, outcome.hash) in seen:
            continue
        seen.add((outcome.kind, outcome.hash))
        hashes.append({"kind": outcome.kind, "hash": outcome.hash, "quality": outcome.quality})
    for line in skipped:
        click.echo(line, err=True)
    if failed:
        raise click.ClickException(
            "these files could not be hashed, so nothing was sent:\n  " + "\n  ".join(failed)
        )
    if not hashes:
        raise click.ClickException(
            "none of these files gave a hash that can be shared; nothing sent"
        )
    if len(hashes) > MAX_CASE_HASHES:
        raise click.ClickException(
            f"these files give {len(hashes)} hashes; a case holds at most {MAX_CASE_HASHES}. "
            "Open several cases, each with fewer files; nothing was sent"
        )
    return hashes


@click.group("case")
def case_group() -> None:
    """Open, check or withdraw your case at a publisher (no node directory needed).

    \b
    Example:
        hashfed case open ~/private/photo1.jpg ~/private/clip.mp4 --publisher https://...
        HASHFED_CASE_PIN=... hashfed case status HF-XXXX-... --publisher https://...
    """


@case_group.command("open")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path, exists=True))
@_publisher_option
@click.option("--email", help="Send the case number once to this address (it is not stored).")
@click.option(
    "--choose-pin",
    is_flag=True,
    help=f"Choose your own PIN (prompted, or {PIN_ENV}); default: one is generated for you.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the answer as JSON.")
def case_open(
    paths: tuple[Path, ...], publisher: str, email: str | None, choose_pin: bool, as_json: bool
) -> None:
    """Hash photos and videos on this device and open a case with their hashes only.

    The images never leave this device. Prints the case number and PIN once:
    write them down, the PIN cannot be recovered. Accepted: the photo and video
    types `hashfed hash --help` lists, iPhone HEIC, AVIF and WebP photos included.

    \b
    Example:
        hashfed case open photo.jpg clip.mp4 --publisher https://hashfed.stopncii.example
    """
    hashes = _hash_files(paths)
    body: dict[str, Any] = {"hashes": hashes}
    if choose_pin:
        body["pin"] = _read_pin(confirm=True)
    if email:
        body["email"] = email
    answer = _request(publisher, "POST", CASES_PATH, body)
    if as_json:
        click.echo(json.dumps(answer, indent=2))
        return
    waiting = {
        "review": "waiting for the publisher's review, then the next publishing batch",
        "pending": "waiting for the next publishing batch",
    }.get(str(answer.get("state")), str(answer.get("state")))
    count = answer.get("hashes")
    noun = plural(count, "hash", "hashes") if isinstance(count, int) else f"{count} hashes"
    click.echo(f"Case opened with {noun}, {waiting}.\n")
    click.echo(f"  case number: {answer['case']}")
    if "pin" in answer:
        click.echo(f"  PIN:         {answer['pin']}")
    else:
        click.echo("  PIN:         the one you chose")
    click.echo(
        "\nWrite these down now and keep them safe: you need both to check or withdraw the\n"
        "case. The PIN cannot be recovered or reset by anyone, including the publisher."
    )
    if answer.get("email") == "queued":
        click.echo(
            "The case number is also being sent to your email address (not the PIN); if it\n"
            "does not arrive, the case number above is the only copy."
        )


@case_group.command("status")
@click.argument("number")
@_publisher_option
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def case_status(number: str, publisher: str, as_json: bool) -> None:
    """Show your case's state, hashes, date opened and partners' feedback.

    The PIN is read from HASHFED_CASE_PIN or asked for (hidden).

    \b
    Example:
        hashfed case status HF-XXXX-XXXX-XXXX-XXXX-XXXX-XXXX-XX --publisher https://...
    """
    answer = _request(publisher, "GET", _case_path(number), pin=_read_pin())
    _print_status(answer, as_json)


def _print_status(answer: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(answer, indent=2))
        return
    click.echo(f"state:     {answer['state']}")
    click.echo(f"hashes:    {answer['hashes']} ({answer['published']} published)")
    click.echo(f"opened:    {answer['opened']}")
    feedback = ", ".join(f"{k} {v}" for k, v in answer.get("feedback", {}).items())
    click.echo(f"feedback:  {feedback or 'none'}")


@case_group.command("withdraw")
@click.argument("number")
@_publisher_option
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--json", "as_json", is_flag=True, help="Print the new status as JSON.")
def case_withdraw(number: str, publisher: str, yes: bool, as_json: bool) -> None:
    """Withdraw your case: its hashes are retracted everywhere. This cannot be undone.

    The PIN is read from HASHFED_CASE_PIN or asked for (hidden).

    \b
    Example:
        hashfed case withdraw HF-XXXX-XXXX-XXXX-XXXX-XXXX-XXXX-XX --publisher https://...
    """
    pin = _read_pin()
    if not yes:
        click.confirm(
            "Withdraw this case? Partners stop matching its hashes; this cannot be undone",
            abort=True,
            err=True,
        )
    answer = _request(publisher, "POST", _case_path(number, "/withdraw"), pin=pin)
    _print_status(answer, as_json)


# -- the operator's commands ---------------------------------------------------------------


@click.group("cases")
def cases_group() -> None:
    """The case desk of this publisher node: list, approve, reject, publish now.

    \b
    Example:
        hashfed cases list --state review
        hashfed cases approve c1a2b3c4d5e6
    """


def _with_desk(home: Path) -> tuple[Any, CaseDesk]:
    node = open_node(home)
    try:
        return node, open_case_desk(node.config, node.signer)
    except BaseException:
        node.close()
        raise


@cases_group.command("list")
@click.option("--state", type=click.Choice(STATES), help="Only cases in this state.")
@output_options
@click.pass_obj
def cases_list(home: Path, state: str | None, fmt: str) -> None:
    """List the cases: id, state, date opened, hashes, published.

    Case numbers and PINs are not stored, so they cannot be shown.

    \b
    Example:
        hashfed cases list --state review --json
    """
    node, desk = _with_desk(home)
    with node:
        rows = desk.list_cases(state)
        desk.close()
    emit(rows, fmt, ["id", "state", "opened", "hashes", "published"])


@cases_group.command("approve")
@click.argument("case_id")
@click.pass_obj
def cases_approve(home: Path, case_id: str) -> None:
    """Approve a case held for review: the next batch publishes its hashes."""
    node, desk = _with_desk(home)
    with node:
        try:
            desk.approve(case_id)
        finally:
            desk.close()
    click.echo(f"case {case_id} approved; the next batch publishes it ('hashfed cases publish')")


@cases_group.command("reject")
@click.argument("case_id")
@click.pass_obj
def cases_reject(home: Path, case_id: str) -> None:
    """Reject a case not yet published: its hashes are deleted and never published."""
    node, desk = _with_desk(home)
    with node:
        try:
            desk.reject(case_id)
        finally:
            desk.close()
    click.echo(f"case {case_id} rejected; its hashes were deleted")


@cases_group.command("publish")
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON.")
@click.pass_obj
def cases_publish(home: Path, as_json: bool) -> None:
    """Publish the pending hashes of every approved case now, in one shuffled batch.

    'hashfed serve' does this every [cases] batch_interval seconds.
    """
    node, desk = _with_desk(home)
    with node:
        try:
            result = desk.publish_pending()
        finally:
            desk.close()
        if result.published:
            push_now(node)  # to the witnesses in the node's policy, if it names any
    if as_json:
        click.echo(json.dumps(dataclasses.asdict(result)))
    elif result.published:
        click.echo(
            f"published {plural(result.published, 'hash', 'hashes')} of "
            f"{plural(result.cases, 'case')} from index "
            f"{result.first_index}"
        )
    else:
        click.echo("nothing pending")
    sys.stdout.flush()
