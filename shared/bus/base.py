from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from functools import lru_cache
from typing import Protocol

from shared.envelope import Envelope
from shared.events import validate_data

Handler = Callable[[Envelope], Awaitable[None]]


class Delivery(Protocol):
    """One event taken from a consumer queue, settled later by whoever handles it (the
    writer acks only after its batch has committed)."""

    envelope: Envelope
    # True when the broker delivers it again (after a nack or a lost connection): the
    # consumer then checks its inbox before handling it.
    redelivered: bool

    def ack(self) -> None: ...

    def nack(self) -> None:
        """Handling failed: deliver it again later (dead-lettered past the delivery limit)."""
        ...


OnDelivery = Callable[[Delivery], None]


class Bus(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def publish(self, envelope: Envelope) -> None:
        """Return once the event is safely with the broker (RabbitMQ: confirmed) or, in memory,
        handled by every subscriber. Raise on failure: the caller keeps the event and retries."""
        ...

    async def publish_many(self, envelopes: Sequence[Envelope]) -> list[bool]:
        """Publish in order with many in flight; return which were confirmed (the caller
        publishes the others again)."""
        ...

    async def subscribe(self, queue: str, binding_keys: list[str], handler: Handler) -> None:
        """Consume ``queue`` (declared durable, bound to the keys) one event at a time:
        ``handler`` raising means the delivery failed and will be retried, then
        dead-lettered."""
        ...

    async def consume(self, queue: str, binding_keys: list[str], on_delivery: OnDelivery
                      ) -> None:
        """Consume ``queue`` by handing each delivery, in queue order, to ``on_delivery``
        (which must not block); the receiver acks or nacks it when done."""
        ...

    async def healthy(self) -> bool: ...


def check_publishable(envelope: Envelope) -> None:
    """Unknown (type, version) or data that does not fit its model: refuse before sending."""
    validate_data(envelope.type, envelope.dataversion, envelope.data)


def _match(pattern: tuple[str, ...], words: tuple[str, ...]) -> bool:
    if not pattern:
        return not words
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        # '#' takes zero or more words.
        return any(_match(rest, words[skip:]) for skip in range(len(words) + 1))
    if not words:
        return False
    return (head in ("*", words[0])) and _match(rest, words[1:])


@lru_cache(maxsize=4096)
def topic_matches(binding_key: str, routing_key: str) -> bool:
    """AMQP topic semantics: '*' is exactly one word, '#' zero or more words."""
    return _match(tuple(binding_key.split(".")), tuple(routing_key.split(".")))
