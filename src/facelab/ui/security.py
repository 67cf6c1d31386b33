"""Who may talk to the UI server: the token, the cookie, Host and Origin checks, and the security headers.

The server binds 127.0.0.1, but any web page the user opens could still send
requests to it (cross-site requests, DNS rebinding). So every request must:

- carry the session cookie, which the browser gets once by opening the start
  URL with ``?token=...`` (the token is printed by ``facelab ui`` and is random
  per start); the cookie is HttpOnly and SameSite=Strict, so other sites' pages
  can neither read it nor send it;
- name an allowed host in its ``Host`` header (a rebinding attack's host name
  is refused);
- when it changes something (any method but GET/HEAD), come from the UI's own
  origin (``Origin`` header).

Every response carries a strict Content-Security-Policy (scripts, styles,
images and connections from the server itself only; no inline script).
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Awaitable, Callable, Iterable
from http.cookies import SimpleCookie
from urllib.parse import parse_qsl, urlencode

COOKIE = "facelab_session"
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; "
       "font-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
]
SAFE_METHODS = ("GET", "HEAD")

ASGIApp = Callable[[dict, Callable[[], Awaitable[dict]], Callable[[dict], Awaitable[None]]], Awaitable[None]]


def new_token() -> str:
    """A fresh random access token (URL-safe, 256 bits)."""
    return secrets.token_urlsafe(32)


def allowed_hosts(host: str, port: int) -> set[str]:
    """The ``Host`` header values the server answers: the bound address and the loopback names, with the port."""
    names = {host, "127.0.0.1", "localhost", "[::1]"}
    return {f"{n}:{port}" for n in names} | ({host} if port == 80 else set())


class Guard:
    """ASGI middleware: refuses requests without the session cookie, with a foreign Host or Origin, and adds the
    security headers to every response. ``GET /?token=<token>`` (any path) sets the cookie and redirects to the same
    address without the token."""

    def __init__(self, app: ASGIApp, token: str, hosts: Iterable[str]) -> None:
        self.app, self.token, self.hosts = app, token, set(hosts)

    async def __call__(self, scope: dict, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        host = headers.get("host", "")
        if host not in self.hosts:
            await _refuse(send, 421, f"facelab ui does not answer for host {host!r}: open the address it printed")
            return
        method = scope["method"]
        origin = headers.get("origin")
        if origin is not None and origin not in {f"{scope.get('scheme', 'http')}://{h}" for h in self.hosts}:
            await _refuse(send, 403, "request from another site refused")
            return
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True))
        given = query.get("token")
        if given is not None and method == "GET":
            if not hmac.compare_digest(given.encode(), self.token.encode()):
                await _refuse(send, 403, "wrong access token: open the address `facelab ui` printed")
                return
            rest = urlencode({k: v for k, v in query.items() if k != "token"})
            location = scope.get("path", "/") + (f"?{rest}" if rest else "")
            await _send(send, 303, b"", [(b"location", location.encode()),
                                         (b"set-cookie", f"{COOKIE}={self.token}; HttpOnly; SameSite=Strict; Path=/".encode())])
            return
        cookie = SimpleCookie()
        try:
            cookie.load(headers.get("cookie", ""))
        except Exception:  # a malformed cookie header is as good as none
            cookie = SimpleCookie()
        session = cookie.get(COOKIE)
        if session is None or not hmac.compare_digest(session.value.encode(), self.token.encode()):
            await _refuse(send, 403, "no access: open the address `facelab ui` printed (it carries the access token)")
            return
        if method not in SAFE_METHODS and origin is None and headers.get("sec-fetch-site") != "same-origin":
            # a request that changes something must say it comes from the UI's page (browsers send Origin on POST)
            await _refuse(send, 403, "request without Origin refused")
            return

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *HEADERS]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def _send(send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] = ()) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode()),
                            *headers, *HEADERS]})
    await send({"type": "http.response.body", "body": body})


async def _refuse(send, status: int, message: str) -> None:
    await _send(send, status, (message + "\n").encode())
