"""The case desk over HTTP, for people rather than peers (specs/case-api.md).

    POST /v1/cases                          open a case: {"hashes": [...], "pin"?, "email"?}
    GET  /v1/cases/{number}                 its status; the PIN in the X-Case-PIN header
    POST /v1/cases/{number}/status          the same, the PIN in the header or {"pin": ...}
    POST /v1/cases/{number}/withdraw        withdraw it, irreversibly; PIN as above
    *    /v1/cases/{number}/hashes          409: hashes cannot be added; open a new case

These paths need no peer session (node/http/auth.py lets them through). Every answer
is JSON with ``Cache-Control: no-store``. Requests that look like an upload (a
multipart body, a content type other than JSON, image or video bytes) are
refused: images never leave the person's device, only hashes do. Opening
cases and checking PINs are rate limited per client address (in memory only:
no address is ever stored), wrong PINs lock a network out of a case
(node/services/pinguard.py), and PINs are hashed and checked (scrypt) on a small pool of
threads of their own, never on the ones match, sync and the witness use; each
network has at most one PIN check waiting or running at a time, so the pool
serves networks in turn however many requests one of them sends. Opening a case
hashes its PIN on a thread of its own (never behind PIN checks), bounds its
waits itself (node/http/reqtimeout.py: nothing may lose the answer once the case is
stored), and sends the optional email in the background after the answer.

The case number travels in the URL path, so ``hashfed serve``'s access log
(node/http/accesslog.py) names routes, never paths; a reverse proxy in front of the
node must not log paths under ``/v1/cases/`` either (see the README).
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import json
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aiohttp import web
from hashfed.hasher.formats import sniff_format
from hashfed.node.config import CasesConfig
from hashfed.node.http.metrics import app_metrics
from hashfed.node.http.reqtimeout import own_timeout, request_timeout
from hashfed.node.services.casecrypto import InvalidCase
from hashfed.node.services.casedesk import (
    CaseClosed,
    CaseDesk,
    CaseLocked,
    CaseNotFound,
    OpenedCase,
    PreparedCase,
    parse_case_hashes,
)
from hashfed.node.services.mailer import MailError, check_address, send_case_number
from hashfed.node.services.pinguard import client_net

log = logging.getLogger("hashfed.cases")

CASES_PATH = "/v1/cases"
PIN_HEADER = "X-Case-PIN"
MAX_CASE_BODY = 8192
"""Largest request body accepted, in bytes (20 hashes, a PIN and an address take ~3 KiB)."""

PIN_NOTICE = (
    "Write down the case number and the PIN now and keep them safe. The PIN is stored "
    "only in a form that cannot be reversed: nobody, including us, can recover or reset it."
)
NEW_CASE_NOTICE = (
    "hashes cannot be added to an existing case or changed; open a new case for more images"
)
UPLOAD_NOTICE = (
    "images and videos are never uploaded: send only the hashes computed on your device "
    "(for example with 'hashfed case open'), as JSON"
)

MonotonicClock = Callable[[], float]


class TokenBucket:
    """Per-client token buckets: burst tokens, refilled at per_hour an hour, in memory only.

    At most max_clients buckets are kept, least recently used first out: memory
    and the work per request stay bounded however many addresses a caller has.
    A forgotten client starts again with a full bucket.
    """

    def __init__(
        self,
        burst: int,
        per_hour: float,
        clock: MonotonicClock = time.monotonic,
        max_clients: int = 100_000,
    ) -> None:
        if max_clients < 1:
            raise ValueError("max_clients must be at least 1")
        self.burst = burst
        self.rate = per_hour / 3600
        self._clock = clock
        self._max = max_clients
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, client: str) -> float:
        """Takes a token for client; returns 0 if it had one, else the seconds until it will."""
        now = self._clock()
        tokens, last = self._buckets.pop(client, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        wait = 0.0
        if tokens < 1:
            wait = (1 - tokens) / self.rate
        else:
            tokens -= 1
        self._buckets[client] = (tokens, now)  # now the most recently used
        while len(self._buckets) > self._max:
            self._buckets.popitem(last=False)
        return wait


OPEN_GLOBAL_BURST = CasesConfig.open_global_burst
"""Cases any number of clients together may open at once ([cases] open_global_burst)."""

OPEN_GLOBAL_PER_HOUR = CasesConfig.open_global_per_hour
"""How fast that shared allowance refills, in cases an hour."""

FIRST_CASE_WINDOW = 3600.0
"""A network that opened no case for this many seconds may open one even when the
shared allowance is spent: draining it never locks people out."""

_EVERYONE = "*"


def client_key(address: str) -> str:
    """Returns the rate-limit key of a client address: an IPv4 address as it is, an IPv6
    address by its /64 (one host usually holds a whole /64), anything else as it is."""
    try:
        ip = ipaddress.ip_address(address.strip().strip("[]").split("%")[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class CaseApi:
    """What the case routes share: the desk, the limits, and how to send email."""

    def __init__(
        self,
        desk: CaseDesk,
        config: CasesConfig,
        clock: MonotonicClock = time.monotonic,
        send_mail: Callable[[str, str], None] | None = None,
        open_global: tuple[int, float] | None = None,
    ) -> None:
        self.desk = desk
        self.config = config
        self._clock = clock
        self.opening = TokenBucket(config.open_burst, config.open_per_hour, clock)
        # One bucket shared by every client: holds a caller with many addresses.
        burst, per_hour = open_global or (config.open_global_burst, config.open_global_per_hour)
        self.opening_everyone = TokenBucket(burst, per_hour, clock, 1)
        self._last_opened: OrderedDict[str, float] = OrderedDict()  # network -> time
        self.guessing = TokenBucket(config.guess_burst, config.guess_per_hour, clock)
        # PIN hashing (scrypt) has threads of its own; each network has at most one
        # check waiting or running, so the threads serve networks in turn.
        self.pin_executor = ThreadPoolExecutor(config.pin_workers, thread_name_prefix="hashfed-pin")
        self.pin_checks: set[str] = set()
        # Opening a case hashes its PIN on a thread of its own: never queued behind
        # PIN checks (the opening buckets bound how many wait for it).
        self.open_executor = ThreadPoolExecutor(1, thread_name_prefix="hashfed-open")
        self.mail_tasks: set[asyncio.Task[None]] = set()
        self.send_mail = send_mail or (
            (lambda to, number: send_case_number(config, to, number, desk.origin))
            if config.smtp_host
            else None
        )

    def address(self, request: web.Request) -> str:
        """Returns the client's address: from the trusted proxy's header if configured,
        else the peer's address."""
        if self.config.client_ip_header:
            value = request.headers.get(self.config.client_ip_header, "")
            last = value.split(",")[-1].strip()
            if last:
                return last
        return request.remote or "-"

    def client(self, request: web.Request) -> str:
        """Returns the client's rate-limit key (:func:`client_key`)."""
        return client_key(self.address(request))

    def take_opening(self, request: web.Request) -> float:
        """Takes a token to open a case from the client's bucket, then from everyone's;
        a network's first case in FIRST_CASE_WINDOW needs no shared token."""
        wait = self.opening.take(self.client(request))
        if wait:
            return wait
        net, now = client_net(self.address(request)), self._clock()
        last = self._last_opened.pop(net, None)
        self._last_opened[net] = now
        while len(self._last_opened) > 100_000:
            self._last_opened.popitem(last=False)
        wait = self.opening_everyone.take(_EVERYONE)
        if wait and last is not None and now - last < FIRST_CASE_WINDOW:
            self._last_opened[net] = last  # a refused request does not count
            return wait
        return 0.0

    async def run_pin_work(self, work: Callable[[], Any]) -> Any:
        """Runs work (it hashes a PIN) on the PIN threads."""
        return await asyncio.get_running_loop().run_in_executor(self.pin_executor, work)


CASE_API = web.AppKey("hashfed_case_api", CaseApi)


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(
        {"error": message}, status=status, headers={"Cache-Control": "no-store", **(headers or {})}
    )


def _too_many(wait: float, what: str) -> web.Response:
    seconds = max(1, math.ceil(wait))
    return _error(
        429,
        f"too many {what} from this address; try again in {seconds} seconds",
        {"Retry-After": str(seconds)},
    )


def _looks_like_media(body: bytes) -> bool:
    if sniff_format(body[:512]) is not None:
        return True
    head = body[:16]
    return (head[:4] == b"RIFF" and head[8:12] == b"WEBP") or head.startswith(
        (b"\x1aE\xdf\xa3", b"\x00\x00\x00\x0cjP", b"%PDF")
    )


class _Refused(Exception):
    def __init__(self, response: web.Response) -> None:
        super().__init__("refused")
        self.response = response


async def _json_body(request: web.Request, required: bool) -> dict[str, Any]:
    """Returns the request's JSON object (empty if there is no body and none is required)."""
    content_type = request.headers.get("Content-Type", "")
    if not request.body_exists and not required:
        return {}
    if content_type.lower().startswith("multipart/"):
        raise _Refused(_error(415, UPLOAD_NOTICE))
    if request.content_type != "application/json":
        raise _Refused(
            _error(415, "send a JSON body (Content-Type: application/json); " + UPLOAD_NOTICE)
        )
    if request.content_length is not None and request.content_length > MAX_CASE_BODY:
        raise _Refused(
            _error(413, f"the body is larger than {MAX_CASE_BODY} bytes; " + UPLOAD_NOTICE)
        )
    chunks, total = [], 0
    while chunk := await request.content.read(MAX_CASE_BODY + 1 - total):
        total += len(chunk)
        if total > MAX_CASE_BODY:
            raise _Refused(
                _error(413, f"the body is larger than {MAX_CASE_BODY} bytes; " + UPLOAD_NOTICE)
            )
        chunks.append(chunk)
    body = b"".join(chunks)
    if _looks_like_media(body):
        raise _Refused(_error(415, UPLOAD_NOTICE))
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise _Refused(_error(400, "the body is not valid JSON")) from None
    except RecursionError:
        raise _Refused(_error(400, "the body is not valid JSON: nested too deeply")) from None
    if not isinstance(data, dict):
        raise _Refused(_error(400, "the body must be a JSON object"))
    return data


def _only(data: dict[str, Any], allowed: Iterable[str]) -> None:
    extra = set(data) - set(allowed)
    if extra:
        raise _Refused(
            _error(
                400, f"unknown field(s) {', '.join(sorted(extra))}; allowed: {', '.join(allowed)}"
            )
        )


def _opened_json(opened: OpenedCase, emailing: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "case": opened.number,
        "state": opened.state,
        "hashes": opened.count,
        "notice": PIN_NOTICE,
    }
    if opened.pin is not None:
        out["pin"] = opened.pin
    if emailing:
        out["email"] = "queued"
    return out


def _send_in_background(api: CaseApi, email: str, number: str) -> None:
    """Sends the case number by email on a thread, after the answer is made: its
    outcome (only logged) can never delay or change the answer."""

    def send() -> None:
        assert api.send_mail is not None
        try:
            api.send_mail(email, number)
        except MailError as exc:
            log.warning("case desk: %s", exc)
        except Exception as exc:  # never let a mail failure escape unlogged
            log.error("case desk: the email failed (%s)", type(exc).__name__)

    task = asyncio.get_running_loop().create_task(asyncio.to_thread(send))
    api.mail_tasks.add(task)
    task.add_done_callback(api.mail_tasks.discard)


@own_timeout
async def open_case(request: web.Request) -> web.Response:
    """Opens a case. The request timeout bounds everything before the case is stored
    (reading the body, waiting for and hashing the PIN); nothing after it can keep
    the number and PIN from the answer: the email goes out in the background."""
    api = request.app[CASE_API]
    wait = api.take_opening(request)
    metrics = app_metrics(request.app)
    if wait:
        if metrics is not None:
            metrics.case_rate_limited.labels("opening").inc()
        return _too_many(wait, "cases opened")
    try:
        async with asyncio.timeout(request_timeout(request)):
            prepared = await _prepare_case(request, api)
    except _Refused as refused:
        return refused.response
    except InvalidCase as exc:
        return _error(400, str(exc))
    except TimeoutError:
        # Nothing is stored yet: the person may simply try again.
        raise web.HTTPServiceUnavailable(text="request timed out\n") from None
    email, ready = prepared
    # From here on the case is stored and its answer must be sent: no timeout, and
    # a cancelled request still finishes storing (the thread runs on regardless).
    opened = await asyncio.to_thread(api.desk.commit_case, ready)
    if metrics is not None:
        metrics.cases_opened.inc()
    emailing = email is not None and api.send_mail is not None
    response = web.json_response(
        _opened_json(opened, emailing), status=201, headers={"Cache-Control": "no-store"}
    )
    if emailing:
        assert email is not None
        _send_in_background(api, email, opened.number)
    return response


async def _prepare_case(request: web.Request, api: CaseApi) -> tuple[str | None, PreparedCase]:
    """Reads and checks an open request and hashes its PIN; stores nothing."""
    data = await _json_body(request, required=True)
    _only(data, ("hashes", "pin", "email"))
    email = data.get("email")
    hashes = parse_case_hashes(data.get("hashes"), api.desk.policy)
    if email is not None:
        if api.send_mail is None:
            raise InvalidCase(
                "this case desk does not send email; leave 'email' out and write the "
                "case number down"
            )
        try:
            check_address(email)
        except ValueError as exc:
            raise InvalidCase(str(exc)) from None
    pin = data.get("pin")
    prepared = await asyncio.get_running_loop().run_in_executor(
        api.open_executor, functools.partial(api.desk.prepare_case, hashes, pin)
    )
    return email, prepared


async def _pin_request(
    request: web.Request, action: Callable[[str, str, str], Any], body_allowed: bool
) -> web.Response:
    api = request.app[CASE_API]
    if "pin" in request.query or PIN_HEADER.lower() in (k.lower() for k in request.query):
        return _error(400, f"never put the PIN in the URL; send it in the {PIN_HEADER} header")
    wait = api.guessing.take(api.client(request))
    metrics = app_metrics(request.app)
    if wait:
        if metrics is not None:
            metrics.case_rate_limited.labels("pin_check").inc()
        return _too_many(wait, "PIN checks")
    net = client_net(api.address(request))
    if (net in api.pin_checks or len(api.pin_checks) >= api.config.max_pin_checks) and metrics:
        metrics.case_rate_limited.labels("pin_check").inc()
    if net in api.pin_checks:
        return _error(
            429,
            "one PIN check at a time from this network; try again in a second",
            {"Retry-After": "1"},
        )
    if len(api.pin_checks) >= api.config.max_pin_checks:
        return _error(503, "the case desk is busy; try again in 5 seconds", {"Retry-After": "5"})
    api.pin_checks.add(net)
    try:
        return await _checked_pin_request(request, api, action, body_allowed, net)
    finally:
        api.pin_checks.discard(net)


async def _checked_pin_request(
    request: web.Request,
    api: CaseApi,
    action: Callable[[str, str, str], Any],
    body_allowed: bool,
    net: str,
) -> web.Response:
    pin = request.headers.get(PIN_HEADER)
    try:
        data = await _json_body(request, required=False) if body_allowed else {}
        _only(data, ("pin",))
    except _Refused as refused:
        return refused.response
    if pin is None:
        pin = data.get("pin")
    if not isinstance(pin, str) or not pin:
        return _error(400, f'send the case\'s PIN in the {PIN_HEADER} header or as {{"pin": ...}}')
    try:
        number = request.match_info["number"]
        status = await api.run_pin_work(functools.partial(action, number, pin, net))
    except CaseNotFound as exc:
        return _error(404, str(exc))
    except CaseLocked as exc:
        metrics = app_metrics(request.app)
        if metrics is not None:
            metrics.case_lockouts.inc()
        return _error(429, str(exc), {"Retry-After": str(exc.retry_after)})
    except CaseClosed as exc:
        return _error(409, str(exc))
    except InvalidCase as exc:
        return _error(400, str(exc))
    return web.json_response(status.to_json(), headers={"Cache-Control": "no-store"})


async def case_status(request: web.Request) -> web.Response:
    return await _pin_request(request, request.app[CASE_API].desk.status, body_allowed=False)


async def case_status_post(request: web.Request) -> web.Response:
    return await _pin_request(request, request.app[CASE_API].desk.status, body_allowed=True)


async def case_withdraw(request: web.Request) -> web.Response:
    response = await _pin_request(request, request.app[CASE_API].desk.withdraw, body_allowed=True)
    if response.status == 200:
        metrics = app_metrics(request.app)
        if metrics is not None:
            metrics.cases_withdrawn.inc()
    return response


async def no_new_hashes(request: web.Request) -> web.Response:
    return _error(409, NEW_CASE_NOTICE)


def setup_case_api(
    app: web.Application,
    desk: CaseDesk,
    config: CasesConfig,
    *,
    clock: MonotonicClock = time.monotonic,
    send_mail: Callable[[str, str], None] | None = None,
    open_global: tuple[int, float] | None = None,
) -> CaseApi:
    """Adds the case routes to app (a node app from server.create_app) and returns their state.

    clock drives the rate limits (tests pass a fake one); send_mail(to, number)
    replaces the SMTP sender; open_global is (burst, per hour) of the bucket all
    clients share for opening cases (default: from config).
    """
    api = CaseApi(desk, config, clock, send_mail, open_global)
    app[CASE_API] = api

    async def stop_pin_threads(_app: web.Application) -> None:
        api.pin_executor.shutdown(wait=True, cancel_futures=True)
        api.open_executor.shutdown(wait=True, cancel_futures=True)
        if api.mail_tasks:  # emails under way finish (each SMTP step has its timeout)
            await asyncio.gather(*api.mail_tasks, return_exceptions=True)

    app.on_cleanup.append(stop_pin_threads)
    number = CASES_PATH + "/{number}"
    app.router.add_post(CASES_PATH, open_case)
    app.router.add_get(number, case_status)
    app.router.add_post(number + "/status", case_status_post)
    app.router.add_post(number + "/withdraw", case_withdraw)
    app.router.add_route("*", number + "/hashes", no_new_hashes)
    app.router.add_route("PUT", number, no_new_hashes)
    app.router.add_route("PATCH", number, no_new_hashes)
    return api
