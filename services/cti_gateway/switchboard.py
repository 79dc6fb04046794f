"""Connected softswitches (in memory, per process)."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import uuid
from typing import Any, Protocol

import structlog

log = structlog.get_logger(__name__)


class SwitchGone(ConnectionError):
    pass


class TextSocket(Protocol):
    async def send_text(self, data: str) -> None: ...


def switch_prefix(name: str) -> str:
    """The part of a connection id that names its switch (the token's subject)."""
    return f"sw-{hashlib.sha256(name.encode()).hexdigest()[:10]}-"


class SwitchConnection:
    """One switch's WebSocket. Calls remember the connection id that carries them, so
    commands about a call go back over the connection the call arrived on; the id starts
    with the switch's name (hashed), so a reconnected switch is known as the same one."""

    def __init__(self, socket: TextSocket, name: str) -> None:
        self.id = f"{switch_prefix(name)}{uuid.uuid4().hex[:12]}"
        self.name = name
        self._socket = socket
        self._cseq = itertools.count(1)
        # Starlette sockets must not be written from two tasks at once.
        self._lock = asyncio.Lock()
        self.closed = False

    def same_switch(self, switch_id: str | None) -> bool:
        """``switch_id`` is a connection of this connection's switch (this one or an earlier)."""
        return switch_id is not None and switch_id.startswith(switch_prefix(self.name))

    def next_cseq(self) -> int:
        return next(self._cseq)

    async def send(self, frame: dict[str, Any]) -> None:
        if self.closed:
            raise SwitchGone(f"switch {self.id} is disconnected")
        async with self._lock:
            await self._socket.send_text(json.dumps(frame, default=str))


class Switchboard:
    def __init__(self) -> None:
        self._connections: dict[str, SwitchConnection] = {}
        self._turn = itertools.count()

    def add(self, connection: SwitchConnection) -> None:
        self._connections[connection.id] = connection

    def remove(self, connection: SwitchConnection) -> None:
        connection.closed = True
        self._connections.pop(connection.id, None)

    def get(self, connection_id: str | None) -> SwitchConnection | None:
        return self._connections.get(connection_id) if connection_id else None

    def carrier(self, connection_id: str | None) -> SwitchConnection | None:
        """The connection to reach a call on: the one it arrived on, or, when that one is
        not here (this CTI restarted, the switch reconnected), the newest connection here of
        the same switch, which carries the switch's calls from now on."""
        connection = self.get(connection_id)
        if connection is not None or connection_id is None:
            return connection
        return next((c for c in reversed(self._connections.values())
                     if c.same_switch(connection_id)), None)

    def pick(self) -> SwitchConnection | None:
        """A connection for a new outbound call (round robin over the connected switches)."""
        if not self._connections:
            return None
        connections = list(self._connections.values())
        return connections[next(self._turn) % len(connections)]

    def __len__(self) -> int:
        return len(self._connections)
