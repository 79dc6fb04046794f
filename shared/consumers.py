"""Typed consumers: what one queue consumes, declared as a handler per catalog model.

    consumes = Consumes()

    @consumes.on(CallOffered)
    async def offered(tx: Transaction, event: CallOffered) -> None: ...

The queue's binding keys come from the models (no list of types kept by hand). A delivery is
read *tolerantly*: fields its model does not know are ignored, so a producer that adds one
does not break the consumers still on the older model during a rolling deploy (producers
stay strict: the catalog forbids unknown fields when an event is emitted). An older version
of an event reaches the handler of the newer one through the upcasts the consumer declares:

    @consumes.upcast("cti.call.released", 1)
    def released_v1(data: dict[str, Any]) -> dict[str, Any]:   # v1 data -> v2 data
        return {**data, "queue": None}
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import structlog

from shared.envelope import Envelope, routing_key
from shared.events import TOLERANT, EventData

log = structlog.get_logger(__name__)

EventHandler = Callable[[Any, Any], Awaitable[None]]
Upcast = Callable[[dict[str, Any]], dict[str, Any]]
H = TypeVar("H", bound=EventHandler)


class Consumes:
    def __init__(self, *, stale: tuple[type[Exception], ...] = ()) -> None:
        # Errors that mean "this event no longer applies" (the entity moved on): logged and
        # the delivery acked, since a retry would not change that.
        self.stale = stale
        self._handlers: dict[tuple[str, int], tuple[type[EventData], EventHandler]] = {}
        self._upcasts: dict[tuple[str, int], Upcast] = {}

    def on(self, model: type[EventData]) -> Callable[[H], H]:
        """Register ``handler(tx, event)`` for ``model``'s (type, version)."""
        def register(handler: H) -> H:
            self.add(model, handler)
            return handler

        return register

    def add(self, model: type[EventData], handler: EventHandler) -> None:
        key = (str(model.event_type), int(model.event_version))  # type: ignore[attr-defined]
        if key in self._handlers:
            raise ValueError(f"{routing_key(*key)} has a handler already")
        self._handlers[key] = (model, self._ignoring_stale(handler) if self.stale else handler)

    def _ignoring_stale(self, handler: EventHandler) -> EventHandler:
        async def run(tx: Any, event: Any) -> None:
            try:
                await handler(tx, event)
            except self.stale as error:
                log.info("event ignored: no longer applies", reason=str(error),
                         event_type=event.event_type)

        return run

    def upcast(self, event_type: str, from_version: int) -> Callable[[Upcast], Upcast]:
        """Register how ``event_type`` at ``from_version`` becomes ``from_version + 1``."""
        def register(upcast: Upcast) -> Upcast:
            self._upcasts[(event_type, from_version)] = upcast
            return upcast

        return register

    @property
    def routing_keys(self) -> list[str]:
        """Every (type, version) handled, and every older version an upcast chain lifts to
        one that is."""
        keys = set(self._handlers)
        for event_type, version in self._upcasts:
            if self._target(event_type, version) is not None:
                keys.add((event_type, version))
        return sorted(routing_key(t, v) for t, v in keys)

    def _target(self, event_type: str, version: int) -> int | None:
        while (event_type, version) not in self._handlers:
            if (event_type, version) not in self._upcasts:
                return None
            version += 1
        return version

    def parse(self, envelope: Envelope) -> tuple[EventData, EventHandler] | None:
        """The delivery as its handler's model, and the handler; ``None`` if this consumer
        has no handler for it. Data its model refuses raises (the delivery is retried, then
        dead-lettered)."""
        event_type, version, data = envelope.type, envelope.dataversion, envelope.data
        while (event_type, version) not in self._handlers:
            upcast = self._upcasts.get((event_type, version))
            if upcast is None:
                return None
            data, version = upcast(dict(data)), version + 1
        model, handler = self._handlers[(event_type, version)]
        return model.model_validate(data, context=TOLERANT), handler

