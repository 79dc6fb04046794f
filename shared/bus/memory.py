"""In-memory bus for the all-in-one process, with the RabbitMQ bus's semantics.

Each consumer queue has its own worker, so one slow consumer does not reorder another's
events. ``publish`` returns when every bound queue has handled the event (or dead-lettered
it), which lets the outbox mark a row sent only once it has really been delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from dataclasses import dataclass, field

import structlog

from shared.bus.base import Handler, Unroutable, check_publishable, topic_matches
from shared.envelope import Envelope

log = structlog.get_logger(__name__)


@dataclass
class _Queue:
    name: str
    binding_keys: list[str]
    pending: asyncio.Queue[tuple[Envelope, asyncio.Future[None]]] = field(default_factory=asyncio.Queue)
    handlers: list[Handler] = field(default_factory=list)
    workers: list[asyncio.Task[None]] = field(default_factory=list)
    dead_letters: list[Envelope] = field(default_factory=list)


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

    async def healthy(self) -> bool:
        return not self._closed

    async def subscribe(self, queue: str, binding_keys: list[str], handler: Handler) -> None:
        entry = self.queues.get(queue)
        if entry is None:
            entry = self.queues[queue] = _Queue(queue, list(binding_keys))
        else:
            # A second subscriber on one queue competes for its messages, as on RabbitMQ.
            entry.binding_keys = sorted(set(entry.binding_keys) | set(binding_keys))
        entry.handlers.append(handler)
        entry.workers.append(asyncio.create_task(self._work(entry, handler), name=f"bus:{queue}"))

    async def publish(self, envelope: Envelope) -> None:
        if self._closed:
            raise ConnectionError("bus is closed")
        check_publishable(envelope)
        key = envelope.routing_key
        targets = [q for q in self.queues.values()
                   if any(topic_matches(b, key) for b in q.binding_keys)]
        if not targets:
            if not self.keep_unrouted:
                raise Unroutable(f"no queue bound for {key}")
            self.unrouted.append(envelope)
            return
        loop = asyncio.get_running_loop()
        deliveries = []
        for queue in targets:
            done: asyncio.Future[None] = loop.create_future()
            queue.pending.put_nowait((envelope, done))
            deliveries.append(done)
        await asyncio.gather(*deliveries)

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
