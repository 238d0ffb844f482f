"""What a request must pass before any route sees it: a Host this server answers to, a bounded body, a token.

- Host (DNS rebinding): a loopback bind answers to localhost, 127.0.0.1 and [::1]; a bind to one address
  answers to that address; a 0.0.0.0 / :: bind answers to the loopback names. ``--allow-host NAME`` adds
  names (``*`` turns the check off). A port in the Host header must be the bound port. Anything else: 400.
- Bodies: at most ``max_body`` bytes, with or without Content-Length (chunked); beyond it: 413.
- Token: ``Authorization: Bearer TOKEN``; clip URLs handed out by /api/generate carry a signature that
  stands in for the token on that clip until the result's promise (the cache TTL) runs out, so the
  page's ``<audio>`` element, which sends no headers, can play them.
"""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import time
from typing import Iterable, Optional

from fastapi import Depends, HTTPException, Query
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
WILDCARD_BINDS = ("0.0.0.0", "::", "")


def is_loopback(host: str) -> bool:
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def allowed_hosts(bind: str, extra: Iterable[str] = ()) -> Optional[set[str]]:
    """Host names (lower case, no port) that a server bound to ``bind`` answers to; None means any."""
    extra = [e.strip().lower().rstrip(".").strip("[]") for e in extra if e.strip()]
    if "*" in extra:
        return None
    names = set(extra)
    if is_loopback(bind) or bind in WILDCARD_BINDS:
        names.update(LOOPBACK_NAMES)
    else:
        names.add(bind.lower().rstrip(".").strip("[]"))
    return names


def split_host(value: str) -> tuple[str, Optional[str]]:
    """``name[:port]`` or ``[v6][:port]`` -> (name, port or None)."""
    value = value.strip().lower()
    if value.startswith("["):
        name, _, rest = value[1:].partition("]")
        return name, rest[1:] if rest.startswith(":") else None
    if value.count(":") == 1:
        name, port = value.split(":")
        return name, port
    return value, None


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int):
        super().__init__(413, f"request body over {limit} bytes")


class Guard:
    """ASGI middleware: Host check and body-size cap, before FastAPI reads anything."""

    def __init__(self, app, max_body: int, hosts: Optional[set[str]], port: Optional[int]):
        self.app, self.max_body, self.hosts, self.port = app, max_body, hosts, port

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if self.hosts is not None and not self._host_ok(headers.get("host")):
            return await _send_error(send, 400, "the Host header does not name this server "
                                                "(start it with --allow-host NAME to add a name)")
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            return await _send_error(send, 413 if length.isdigit() else 400,
                                     f"request body over {self.max_body} bytes" if length.isdigit()
                                     else "malformed Content-Length")
        seen, started = 0, False

        async def limited_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    raise BodyTooLarge(self.max_body)
            return message

        async def tracking_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge as e:
            if started:
                raise
            await _send_error(send, 413, e.detail)

    def _host_ok(self, value: Optional[str]) -> bool:
        if not value:
            return False
        name, port = split_host(value)
        if port is not None and self.port is not None and port != str(self.port):
            return False
        return name.rstrip(".") in self.hosts


async def _send_error(send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


class Auth:
    """The optional bearer token, and signatures that let a clip URL stand in for it for a while."""

    def __init__(self, token: Optional[str]):
        self.token = token or None
        self.bearer = HTTPBearer(auto_error=False, description="The server's token (when it was started with one).")

    def ok(self, cred: Optional[HTTPAuthorizationCredentials]) -> bool:
        return self.token is None or (cred is not None and hmac.compare_digest(cred.credentials.encode(),
                                                                               self.token.encode()))

    def sign(self, clip_id: str, exp: int) -> str:
        key = hashlib.sha256(b"djenerator-clip-url\0" + self.token.encode()).digest()
        return hmac.new(key, f"{clip_id}\0{exp}".encode(), hashlib.sha256).hexdigest()[:32]

    def clip_query(self, clip_id: str, until: float) -> str:
        """``exp=..&sig=..`` for a clip URL (empty without a token)."""
        if self.token is None:
            return ""
        exp = int(until)
        return f"exp={exp}&sig={self.sign(clip_id, exp)}"

    def signed(self, clip_id: str, exp: int, sig: str) -> bool:
        if self.token is None or not sig or exp < time.time():
            return False
        return hmac.compare_digest(sig.encode(), self.sign(clip_id, exp).encode())

    def require(self):
        """A dependency: the request carries the token (a no-op without one)."""
        def dep(cred: Optional[HTTPAuthorizationCredentials] = Depends(self.bearer)) -> None:
            if not self.ok(cred):
                raise unauthorized()
        return dep

    def require_clip(self):
        """A dependency for clip routes: the token, or a valid unexpired signature in the query."""
        def dep(clip_id: str,
                exp: int = Query(0, ge=0, le=2**40, description="Signed-URL expiry (Unix time)."),
                sig: str = Query("", max_length=64, description="Signed-URL signature."),
                cred: Optional[HTTPAuthorizationCredentials] = Depends(self.bearer)) -> None:
            if not (self.ok(cred) or self.signed(clip_id, exp, sig)):
                raise unauthorized()
        return dep


def unauthorized() -> HTTPException:
    return HTTPException(401, "this endpoint needs 'Authorization: Bearer <token>' (or a signed clip URL "
                              "from /api/generate that has not expired)", headers={"WWW-Authenticate": "Bearer"})
