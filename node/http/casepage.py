"""The person's page: the case desk in a browser, served beside the case API.

    GET /case/              the page, in Dutch or English (``?lang=`` or Accept-Language)
    GET /case/{asset}       its script, worker, style sheet and WebAssembly decoders

The page hashes photos (PDQ) and videos (MD5) in the person's browser and sends only
the hashes to ``POST /v1/cases`` (specs/case-api.md). Its files are built from ``web/``
into the package data folder ``casepage_static`` (``make web``), so an installed wheel
serves it without Node.

Every answer carries a Content-Security-Policy that allows the node itself only (no
third-party request, no inline script; WebAssembly needs ``'wasm-unsafe-eval'``),
``Referrer-Policy: no-referrer`` and ``Cache-Control: no-store``; the page sets no
cookie and stores nothing in the browser. Like the case API, these paths need no peer
session, and the access log writes ``-`` for the client's address and headers.
"""

from __future__ import annotations

import re
from importlib import resources
from importlib.resources.abc import Traversable

from aiohttp import web
from hashfed.node.errors import NodeError

PAGE_PATH = "/case"

LANGUAGES = ("en", "nl")
"""The page's languages; the first is the default."""

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self' 'wasm-unsafe-eval'",
        "worker-src 'self'",
        "connect-src 'self'",
        "img-src 'self' blob:",
        "style-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)

SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), interest-cohort=()",
}
"""Headers on every answer under PAGE_PATH."""

ASSET_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".wasm": "application/wasm",
    ".svg": "image/svg+xml",
}

_ASSET_NAME = re.compile(r"[a-z0-9_]+(?:\.[a-z0-9]+)+")
_LANG_ATTRIBUTE = 'lang="en"'


class PageMissing(NodeError):
    """The built page is not installed (run `make web`)."""


def static_files() -> Traversable:
    """static_files returns the folder of the built page in the installed package."""
    return resources.files("hashfed.node.http") / "casepage_static"


def choose_language(query: str | None, accept_language: str | None) -> str:
    """choose_language returns the page's language: ``?lang=`` first, then Accept-Language.

    Accept-Language entries are taken by their q-value (RFC 9110 §12.5.4); the first
    supported primary tag wins, and English is the default.
    """
    if query in LANGUAGES:
        return query
    ranked: list[tuple[float, int, str]] = []
    for position, item in enumerate((accept_language or "").split(",")):
        tag, _, params = item.strip().partition(";")
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        primary = tag.strip().lower().split("-")[0]
        if primary in LANGUAGES and quality > 0:
            ranked.append((-quality, position, primary))
    return min(ranked)[2] if ranked else LANGUAGES[0]


def _read(name: str) -> bytes:
    path = static_files() / name
    if not path.is_file():
        raise PageMissing(f"the case page's {name} is not installed; build it with `make web`")
    return path.read_bytes()


async def page(request: web.Request) -> web.Response:
    """Serves the page in the language the person asked for."""
    lang = choose_language(request.query.get("lang"), request.headers.get("Accept-Language"))
    html = _read("index.html").decode("utf-8")
    if _LANG_ATTRIBUTE not in html:
        raise PageMissing("the case page's index.html has no lang attribute to set")
    html = html.replace(_LANG_ATTRIBUTE, f'lang="{lang}"', 1)
    headers = {**SECURITY_HEADERS, "Content-Language": lang, "Vary": "Accept-Language"}
    return web.Response(text=html, content_type="text/html", charset="utf-8", headers=headers)


async def asset(request: web.Request) -> web.Response:
    """Serves one of the page's files by its plain name; anything else is 404."""
    name = request.match_info["name"]
    suffix = "." + name.rsplit(".", 1)[-1]
    if not _ASSET_NAME.fullmatch(name) or suffix not in ASSET_TYPES:
        raise web.HTTPNotFound(headers=SECURITY_HEADERS)
    path = static_files() / name
    if not path.is_file():
        raise web.HTTPNotFound(headers=SECURITY_HEADERS)
    headers = {**SECURITY_HEADERS, "Content-Type": ASSET_TYPES[suffix]}
    return web.Response(body=path.read_bytes(), headers=headers)


async def to_page(request: web.Request) -> web.Response:
    """Redirects /case to /case/, keeping the language asked for."""
    target = PAGE_PATH + "/" + (f"?{request.query_string}" if request.query_string else "")
    raise web.HTTPFound(target, headers=SECURITY_HEADERS)


def is_page_path(path: str) -> bool:
    """is_page_path says whether path is the person's page (/case or below it)."""
    return path == PAGE_PATH or path.startswith(PAGE_PATH + "/")


def setup_case_page(app: web.Application) -> None:
    """setup_case_page adds the person's page to a publisher's app that serves the case API.

    It raises PageMissing when the built page is not installed.
    """
    _read("index.html")
    app.router.add_get(PAGE_PATH, to_page)
    app.router.add_get(PAGE_PATH + "/", page)
    app.router.add_get(PAGE_PATH + "/{name}", asset)
