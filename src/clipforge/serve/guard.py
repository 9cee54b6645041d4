"""Request guards that run before any endpoint: the body-size limit and the Host check (pure ASGI middleware).

The body limit counts bytes as they arrive. A Content-Length header is only a claim: a chunked request has none,
and multipart parsing would otherwise spool the whole body to a temporary file before any endpoint could look at
its size. Wrapping ``receive`` stops reading at the limit, so an oversized upload costs at most the limit.

The Host check defends a loopback server against DNS rebinding: a page on evil.example whose name is made to
resolve to 127.0.0.1 can reach the server from the user's browser, but its requests still say
``Host: evil.example``, so refusing Host names other than loopback ones closes that door.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from starlette.exceptions import HTTPException

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def too_large(limit: int) -> str:
    return f"upload larger than {limit / (1024 * 1024):g} MB: send a smaller image"


def host_name(header: str) -> str:
    """The name part of a Host header: "[::1]:8000" -> "::1", "Localhost:80" -> "localhost"."""
    header = header.strip().lower()
    if header.startswith("["):  # IPv6 literal, maybe with a port
        return header[1:].split("]", 1)[0]
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class RequestGuard:
    """ASGI middleware: refuse bodies over ``max_body`` bytes (413) and, when ``allowed_hosts`` is set, requests
    whose Host header names another host (400).

    Args:
        app: the wrapped ASGI app.
        max_body: the largest request body in bytes, counted as it arrives whatever the headers say.
        allowed_hosts: accepted Host names (any port); None accepts every Host (a server bound to a public address).
        upload_limit: the per-file limit quoted in the 413 message.
    """

    def __init__(self, app: ASGIApp, max_body: int, allowed_hosts: Iterable[str] | None = None,
                 upload_limit: int | None = None) -> None:
        self.app, self.max_body = app, max_body
        self.allowed = None if allowed_hosts is None else {h.lower() for h in allowed_hosts}
        self.message = too_large(upload_limit or max_body)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if self.allowed is not None and host_name(headers.get("host", "")) not in self.allowed:
            await _reply(send, 400, f"Host header {headers.get('host', '')!r} refused: this server answers only "
                                    f"to {', '.join(sorted(self.allowed))} (open it as http://127.0.0.1:PORT/)")
            return
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > self.max_body:
            await _reply(send, 413, self.message)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    # Raised inside body parsing: FastAPI re-raises HTTPException, the app's handler answers 413,
                    # and nothing more of the body is read.
                    raise HTTPException(413, self.message)
            return message

        await self.app(scope, counted, send)


async def _reply(send: Send, status: int, error: str) -> None:
    body = json.dumps({"error": error}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
