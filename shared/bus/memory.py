"""In-memory bus for the all-in-one process, with the RabbitMQ bus's semantics.

Each consumer queue has its own order, so one slow consumer does not reorder another's
events. ``publish`` returns when every bound queue has settled the event (handled it, or
dead-lettered it), which lets the outbox mark a row sent only once it has really been
delivered: nothing in this process's memory is the only copy of an event.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import structlog

from shared.bus.base import Handler, OnDelivery, check_publishable, topic_matches
from shared.envelope import Envelope

log = structlog.get_logger(__name__)


@dataclass
class _Queue:
    name: str
    binding_keys: list[str]
    pending: asyncio.Queue[tuple[Envelope, asyncio.Future[None]]] = field(default_factory=asyncio.Queue)
    handlers: list[Handler | OnDelivery] = field(default_factory=list)
    workers: list[asyncio.Task[None]] = field(default_factory=list)
    receivers: list[OnDelivery] = field(default_factory=list)
    turn: itertools.count[int] = field(default_factory=itertools.count)
    dead_letters: list[Envelope] = field(default_factory=list)


class MemoryDelivery:
    def __init__(self, bus: MemoryBus, queue: _Queue, envelope: Envelope,
                 done: asyncio.Future[None], attempt: int = 1) -> None:
        self._bus = bus
        self._queue = queue
        self.envelope = envelope
        self._done = done
        self.attempt = attempt
        self.redelivered = attempt > 1

    def ack(self) -> None:
        if not self._done.done():
            self._done.set_result(None)

    def nack(self) -> None:
        if self.attempt >= self._bus.delivery_limit:
            log.error("dead-lettered", queue=self._queue.name, event_type=self.envelope.type,
                      event_id=self.envelope.id)
            self._queue.dead_letters.append(self.envelope)
            self.ack()
            return
        again = MemoryDelivery(self._bus, self._queue, self.envelope, self._done,
                               self.attempt + 1)
        asyncio.get_running_loop().call_later(self._bus.retry_delay * self.attempt,
                                              self._bus._hand_over, self._queue, again)


class MemoryBus:
    def __init__(self, *, delivery_limit: int = 5, keep_unrouted: bool = True,
                 retry_delay: float = 0.05) -> None:
        self.delivery_limit = delivery_limit
        self.keep_unrouted = keep_unrouted
        self.retry_delay = retry_delay
        self.queues: dict[str, _Queue] = {}
        self.unrouted: deque[Envelope] = deque(maxlen=10_000)
        self._closed = False

    async def start(self) -> None:
        self._closed = False

    async def close(self) -> None:
        self._closed = True
        for queue in self.queues.values():
            for worker in queue.workers:
                worker.cancel()
            for worker in queue.workers:
                with contextlib.suppress(asyncio.CancelledError):
                    await worker
            queue.workers.clear()
            queue.handlers.clear()
            queue.receivers.clear()

    async def healthy(self) -> bool:
        return not self._closed

    def _declare(self, queue: str, binding_keys: list[str]) -> _Queue:
        entry = self.queues.get(queue)
        if entry is None:
            entry = self.queues[queue] = _Queue(queue, list(binding_keys))
        else:
            # A second subscriber on one queue competes for its messages, as on RabbitMQ.
            entry.binding_keys = sorted(set(entry.binding_keys) | set(binding_keys))
        return entry

    async def subscribe(self, queue: str, binding_keys: list[str], handler: Handler) -> None:
        entry = self._declare(queue, binding_keys)
        entry.handlers.append(handler)
        entry.workers.append(asyncio.create_task(self._work(entry, handler), name=f"bus:{queue}"))

    async def consume(self, queue: str, binding_keys: list[str], on_delivery: OnDelivery
                      ) -> None:
        entry = self._declare(queue, binding_keys)
        entry.handlers.append(on_delivery)
        entry.receivers.append(on_delivery)

    async def publish(self, envelope: Envelope) -> None:
        await self._settled(self._route(envelope))

    async def publish_many(self, envelopes: Sequence[Envelope]) -> list[bool]:
        settled = [self._route(envelope) for envelope in envelopes]
        results = await asyncio.gather(*(self._settled(f) for f in settled),
                                       return_exceptions=True)
        return [not isinstance(result, BaseException) for result in results]

    @staticmethod
    async def _settled(deliveries: list[asyncio.Future[None]]) -> None:
        if deliveries:
            await asyncio.gather(*deliveries)

    def _route(self, envelope: Envelope) -> list[asyncio.Future[None]]:
        """Hand the event to every bound queue now (so the order of publishes is the order of
        deliveries); return the futures that settle when each queue is done with it."""
        if self._closed:
            raise ConnectionError("bus is closed")
        check_publishable(envelope)
        key = envelope.routing_key
        targets = [q for q in self.queues.values()
                   if any(topic_matches(b, key) for b in q.binding_keys)]
        if not targets:
            # Nobody is bound: dropped, as the broker drops it (kept to inspect if asked).
            if self.keep_unrouted:
                self.unrouted.append(envelope)
            return []
        loop = asyncio.get_running_loop()
        deliveries = []
        for queue in targets:
            done: asyncio.Future[None] = loop.create_future()
            if queue.receivers:
                self._hand_over(queue, MemoryDelivery(self, queue, envelope, done))
            else:
                queue.pending.put_nowait((envelope, done))
            deliveries.append(done)
        return deliveries

    def _hand_over(self, queue: _Queue, delivery: MemoryDelivery) -> None:
        if not queue.receivers:
            delivery.ack()  # the consumer is gone (shutdown)
            return
        receiver = queue.receivers[next(queue.turn) % len(queue.receivers)]
        receiver(delivery)

    async def _work(self, queue: _Queue, handler: Handler) -> None:
        while True:
            envelope, done = await queue.pending.get()
            try:
                await self._deliver(queue, handler, envelope)
            finally:
                if not done.done():
                    done.set_result(None)

    async def _deliver(self, queue: _Queue, handler: Handler, envelope: Envelope) -> None:
        for attempt in range(1, self.delivery_limit + 1):
            try:
                await handler(envelope)
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("delivery failed", queue=queue.name, event_type=envelope.type,
                            event_id=envelope.id, attempt=attempt, exc_info=True)
                await asyncio.sleep(self.retry_delay * attempt)
        log.error("dead-lettered", queue=queue.name, event_type=envelope.type, event_id=envelope.id)
        queue.dead_letters.append(envelope)
