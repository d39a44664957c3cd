"""Who may use ``serve``: with ``CODITECT_API_TOKEN`` set, every API call and page needs it, and
without one the server only listens on loopback (``check_bind``).

Loopback alone does not keep a browser's other tabs out, so a server on loopback also answers
only requests addressed to a loopback name (``Host``: a DNS-rebinding page is refused), and no
server takes a state-changing request that a browser marks as sent from another site.
"""

from __future__ import annotations

import ipaddress
import secrets
from urllib.parse import urlsplit

from fastapi import HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from ..errors import ConfigError

#: The cookie a page visit with ``?token=`` sets, so the page's own API calls and event stream carry it.
COOKIE = "coditect_token"
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def is_loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


class Guard:
    """Checks the bearer token (header, or the cookie a page visit set); open when there is none."""

    def __init__(self, token: str | None, address: str = "127.0.0.1") -> None:
        self.token = token
        self.hosts = LOOPBACK_NAMES if is_loopback(address) else None

    def _given(self, request: Request) -> str | None:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and value:
            return value.strip()
        return request.cookies.get(COOKIE)

    def _valid(self, given: str | None) -> bool:
        if self.token is None:
            return True
        return given is not None and secrets.compare_digest(given.encode(), self.token.encode())

    def api(self, request: Request) -> None:
        """A FastAPI dependency: 401 unless the request carries the token."""
        if not self._valid(self._given(request)):
            raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})

    def page(self, request: Request) -> Response | None:
        """None if a page may be shown; else the response to send instead: a redirect that moves
        a valid ``?token=`` into a cookie (out of the address bar and history), or a 401 page."""
        query = request.query_params.get("token")
        if query is not None and self._valid(query):
            target = request.url.remove_query_params("token")
            response = RedirectResponse(target.path + (f"?{target.query}" if target.query else ""), status_code=303)
            secure = request.url.scheme == "https"
            response.set_cookie(COOKIE, query, httponly=True, samesite="strict", secure=secure)
            return response
        if self._valid(self._given(request)):
            return None
        body = "<!doctype html><title>401</title><p>This server needs its token: open the page with ?token=…</p>"
        return HTMLResponse(body, status_code=401)

    def refusal(self, request: Request) -> Response | None:
        """The answer to a request no handler may see, else None: addressed to a name other than
        loopback's on a loopback server (400), or state-changing and sent by another site (403)."""
        host = urlsplit(f"//{request.headers.get('host', '')}").hostname or ""
        if self.hosts is not None and host not in self.hosts:
            return JSONResponse({"error": f"Host {host!r} is not this server's (a loopback name)"}, status_code=400)
        if request.method not in SAFE_METHODS:
            site = request.headers.get("sec-fetch-site")
            origin = request.headers.get("origin")
            if (site is not None and site not in ("same-origin", "none")) or (
                origin is not None and urlsplit(origin).netloc != request.headers.get("host")
            ):
                return JSONResponse({"error": "a request from another site may not change anything"}, status_code=403)
        return None


class Gate:
    """ASGI middleware that sends ``Guard.refusal`` before any route (pages, static files, the API) runs."""

    def __init__(self, app: ASGIApp, guard: Guard) -> None:
        self.app = app
        self.guard = guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (refused := self.guard.refusal(Request(scope))) is not None:
            await refused(scope, receive, send)
            return
        await self.app(scope, receive, send)


def check_bind(address: str, token: str | None) -> None:
    """``ConfigError`` for an address beyond loopback without a token: an open API would let anyone
    on the network run agents."""
    if token is None and not is_loopback(address):
        raise ConfigError("--address", f"{address} is reachable beyond this machine; set CODITECT_API_TOKEN first")
