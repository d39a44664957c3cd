"""Who may use ``serve``: with ``CODITECT_API_TOKEN`` set, every API call and page needs it, and
without one the server only listens on loopback (``check_bind``)."""

from __future__ import annotations

import ipaddress
import secrets

from fastapi import HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from ..errors import ConfigError

#: The cookie a page visit with ``?token=`` sets, so the page's own API calls and event stream carry it.
COOKIE = "coditect_token"


class Guard:
    """Checks the bearer token (header, or the cookie a page visit set); open when there is none."""

    def __init__(self, token: str | None) -> None:
        self.token = token

    def _given(self, request: Request) -> str | None:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and value:
            return value.strip()
        return request.cookies.get(COOKIE)

    def _valid(self, given: str | None) -> bool:
        return self.token is None or (given is not None and secrets.compare_digest(given, self.token))

    def api(self, request: Request) -> None:
        """A FastAPI dependency: 401 unless the request carries the token."""
        if not self._valid(self._given(request)):
            raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})

    def page(self, request: Request) -> Response | None:
        """None if a page may be shown; else the response to send instead: a redirect that moves
        a valid ``?token=`` into a cookie (out of the address bar and history), or a 401 page."""
        query = request.query_params.get("token")
        if query is not None and self._valid(query):
            response = RedirectResponse(request.url.remove_query_params("token").path, status_code=303)
            response.set_cookie(COOKIE, query, httponly=True, samesite="strict")
            return response
        if self._valid(self._given(request)):
            return None
        body = "<!doctype html><title>401</title><p>This server needs its token: open the page with ?token=…</p>"
        return HTMLResponse(body, status_code=401)


def check_bind(address: str, token: str | None) -> None:
    """``ConfigError`` for an address beyond loopback without a token: an open API would let anyone
    on the network run agents."""
    if token is not None or address == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(address).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ConfigError("--address", f"{address} is reachable beyond this machine; set CODITECT_API_TOKEN first")
