"""Input that can't hurt: one place for the limits every service's REST puts on a request.

A request is refused before any route sees it when its body is larger than the limit (413),
or when its URL or JSON body holds something no field may hold (422, naming the field in
FastAPI's own error format): a NUL character (PostgreSQL cannot store it in text or JSON), a
lone UTF-16 surrogate (it cannot be encoded as UTF-8), a non-finite number (``NaN``,
``Infinity``: JSON has none and a JSONB column refuses them), invalid UTF-8, or nesting
deeper than the limit. Anything else is left to the route's own schema.

The body is scanned with a few byte searches first and parsed here only when one of them
hits, so an ordinary request costs next to nothing. WebSocket frames are checked by their
own parsers (``shared.switch_frames``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote_to_bytes

from shared.limits import MAX_BODY_BYTES, MAX_DEPTH

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

# Escapes that decode to a NUL or to one half of a surrogate pair.
SUSPECT_ESCAPE = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])")
NON_FINITE = (b"NaN", b"Infinity")
BAD_CHARACTER = re.compile("[\x00\ud800-\udfff]")


@dataclass(frozen=True)
class InputLimits:
    max_body_bytes: int = MAX_BODY_BYTES
    max_depth: int = MAX_DEPTH
    # Larger bodies for the paths that take a file (a trace upload), by path prefix.
    larger_bodies: Mapping[str, int] = field(default_factory=dict)

    def body_limit(self, path: str) -> int:
        for prefix, limit in self.larger_bodies.items():
            if path.startswith(prefix):
                return limit
        return self.max_body_bytes


@dataclass(frozen=True)
class Problem:
    loc: tuple[str | int, ...]
    msg: str
    type: str

    def detail(self) -> list[dict[str, Any]]:
        return [{"loc": list(self.loc), "msg": self.msg, "type": self.type}]


class _NonFinite:
    """Stands in for a ``NaN`` or ``Infinity`` while the body is walked, to find its place."""

    def __init__(self, name: str) -> None:
        self.name = name


def character_problem(text: str) -> str | None:
    found = BAD_CHARACTER.search(text)
    if found is None:
        return None
    return ("NUL characters are not allowed" if found.group() == "\x00"
            else "lone UTF-16 surrogates are not allowed")


def url_problem(scope: Scope) -> Problem | None:
    """A NUL, a lone surrogate or invalid UTF-8 in the path or in a query parameter."""
    raw_path = scope.get("raw_path") or scope.get("path", "").encode("utf-8", "surrogatepass")
    try:
        path = unquote_to_bytes(raw_path).decode("utf-8")
    except UnicodeDecodeError:
        return Problem(("path",), "the path is not valid UTF-8", "string_unicode")
    if (why := character_problem(path)) is not None:
        return Problem(("path",), why, "string_character")
    query = scope.get("query_string", b"")
    if not query:
        return None
    try:
        pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True, encoding="utf-8",
                          errors="strict")
    except UnicodeDecodeError:
        return Problem(("query",), "the query string is not valid UTF-8", "string_unicode")
    for name, value in pairs:
        if (why := character_problem(name) or character_problem(value)) is not None:
            return Problem(("query", name), why, "string_character")
    return None


def suspect(data: bytes, max_depth: int) -> bool:
    """Whether JSON text may hold what :func:`value_problem` looks for (a few byte
    searches: most text is let through without being walked)."""
    return (SUSPECT_ESCAPE.search(data) is not None or b"\x00" in data
            or any(word in data for word in NON_FINITE)
            or data.count(b"[") + data.count(b"{") > max_depth)


def body_problem(body: bytes, max_depth: int) -> Problem | None:
    """What in a JSON body no field may hold, with where it is; None if nothing."""
    if not suspect(body, max_depth):
        return None
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return Problem(("body",), "the body is not valid UTF-8", "string_unicode")
    try:
        value = parse_json(text)
    except RecursionError:
        return Problem(("body",), f"nested deeper than {max_depth} levels", "too_deep")
    except ValueError:
        return None  # not JSON: the route's own parser says so
    return value_problem(value, max_depth)


def parse_json(text: str | bytes) -> Any:
    """``json.loads`` that keeps a ``NaN`` or ``Infinity`` as a marker for
    :func:`value_problem` to find (and report where it is)."""
    return json.loads(text, parse_constant=_NonFinite)


def value_problem(value: Any, max_depth: int, root: str = "body") -> Problem | None:
    """The first thing in a parsed JSON value no field may hold, with its place."""
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(value, (root,))]
    while stack:
        item, loc = stack.pop()
        if len(loc) > max_depth + 1:
            return Problem(loc[:max_depth + 1], f"nested deeper than {max_depth} levels",
                           "too_deep")
        if isinstance(item, str):
            if (why := character_problem(item)) is not None:
                return Problem(loc, why, "string_character")
        elif isinstance(item, _NonFinite):
            return Problem(loc, f"{item.name} is not a number JSON allows", "finite_number")
        elif isinstance(item, dict):
            for key, inner in item.items():
                if (why := character_problem(key)) is not None:
                    return Problem(loc, f"a key: {why}", "string_character")
                stack.append((inner, (*loc, key)))
        elif isinstance(item, list):
            stack.extend((inner, (*loc, index)) for index, inner in enumerate(item))
    return None


class InputGuard:
    """ASGI middleware applying :class:`InputLimits` to every HTTP request."""

    def __init__(self, app: App, limits: InputLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        problem = url_problem(scope)
        if problem is not None:
            await _refuse(send, 422, {"detail": problem.detail()})
            return
        limit = self.limits.body_limit(scope.get("path", ""))
        declared = dict(scope.get("headers") or ()).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _refuse(send, 413, _too_large(limit))
            return
        chunks: list[bytes] = []
        size, more = 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await _refuse(send, 413, _too_large(limit))
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        if body:
            problem = body_problem(body, self.limits.max_depth)
            if problem is not None:
                await _refuse(send, 422, {"detail": problem.detail()})
                return
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def _too_large(limit: int) -> dict[str, Any]:
    return {"detail": [{"loc": ["body"], "msg": f"the body is larger than {limit} bytes",
                        "type": "too_large"}]}


async def _refuse(send: Send, status: int, body: dict[str, Any]) -> None:
    payload = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(payload)).encode())]})
    await send({"type": "http.response.body", "body": payload})
