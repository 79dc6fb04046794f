"""RabbitMQ bus (aio-pika).

Topology, declared idempotently by every process:

- ``hotline.events``: durable topic exchange all events go to. When ``keep_unrouted`` is on it
  has the alternate exchange ``hotline.unrouted`` (fanout) whose bounded queue keeps events no
  consumer was bound for; otherwise a publish nobody is bound for raises :class:`Unroutable`.
- one durable quorum queue per consumer, with an explicit ``x-delivery-limit`` (3.10 has no
  default) and dead-lettering to ``hotline.dlx`` into ``<queue>.dlq``.

Publishes are mandatory and confirmed. Consumers ack only after the handler returned (the
handler commits its transaction first); a handler error nacks with requeue, which counts
towards the delivery limit. The connection is robust: channels, queues and consumers are
restored after the broker drops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import structlog
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractRobustConnection,
)
from aiormq.exceptions import DeliveryError, PublishError

from shared.bus.base import Handler, Unroutable, check_publishable
from shared.envelope import Envelope

log = structlog.get_logger(__name__)

EXCHANGE = "hotline.events"
UNROUTED_EXCHANGE = "hotline.unrouted"
DEAD_LETTER_EXCHANGE = "hotline.dlx"


class RabbitBus:
    def __init__(self, url: str, *, connection_name: str = "hotline", delivery_limit: int = 5,
                 keep_unrouted: bool = True, prefetch: int = 16) -> None:
        self.url = url
        self.connection_name = connection_name
        self.delivery_limit = delivery_limit
        self.keep_unrouted = keep_unrouted
        self.prefetch = prefetch
        self.connection: AbstractRobustConnection | None = None
        self._publish_channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._publish_lock = asyncio.Lock()

    async def start(self) -> None:
        self.connection = await aio_pika.connect_robust(
            self.url, client_properties={"connection_name": self.connection_name},
            reconnect_interval=1.0,
        )
        self._publish_channel = await self.connection.channel(publisher_confirms=True,
                                                              on_return_raises=True)
        self._exchange = await self._declare_topology(self._publish_channel)

    async def _declare_topology(self, channel: AbstractChannel) -> AbstractExchange:
        arguments: dict[str, Any] = {}
        if self.keep_unrouted:
            unrouted = await channel.declare_exchange(
                UNROUTED_EXCHANGE, aio_pika.ExchangeType.FANOUT, durable=True)
            queue = await channel.declare_queue(
                UNROUTED_EXCHANGE, durable=True,
                arguments={"x-queue-type": "quorum", "x-max-length": 100_000,
                           "x-overflow": "drop-head"})
            await queue.bind(unrouted)
            arguments["alternate-exchange"] = UNROUTED_EXCHANGE
        await channel.declare_exchange(DEAD_LETTER_EXCHANGE, aio_pika.ExchangeType.DIRECT,
                                       durable=True)
        return await channel.declare_exchange(EXCHANGE, aio_pika.ExchangeType.TOPIC,
                                              durable=True, arguments=arguments)

    async def close(self) -> None:
        if self.connection is not None:
            await self.connection.close()
            self.connection = None

    async def healthy(self) -> bool:
        return (self.connection is not None and not self.connection.is_closed
                and self._publish_channel is not None and not self._publish_channel.is_closed)

    async def publish(self, envelope: Envelope) -> None:
        check_publishable(envelope)
        if self._exchange is None:
            raise ConnectionError("bus not started")
        message = aio_pika.Message(
            body=envelope.model_dump_json().encode(),
            content_type="application/cloudevents+json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=envelope.id,
            type=envelope.type,
            timestamp=envelope.time,
            headers={"ce-subject": envelope.subject, "ce-sequence": envelope.sequence,
                     "ce-source": envelope.source},
        )
        try:
            async with self._publish_lock:
                await self._exchange.publish(message, routing_key=envelope.routing_key,
                                             mandatory=True)
        except (DeliveryError, PublishError) as error:
            raise Unroutable(f"broker returned {envelope.routing_key}: {error}") from error

    async def subscribe(self, queue: str, binding_keys: list[str], handler: Handler) -> None:
        if self.connection is None:
            raise ConnectionError("bus not started")
        channel = await self.connection.channel()
        await channel.set_qos(prefetch_count=self.prefetch)
        exchange = await self._declare_topology(channel)
        dead = await channel.declare_queue(f"{queue}.dlq", durable=True,
                                           arguments={"x-queue-type": "quorum"})
        await dead.bind(DEAD_LETTER_EXCHANGE, routing_key=queue)
        consumer_queue = await channel.declare_queue(queue, durable=True, arguments={
            "x-queue-type": "quorum",
            "x-delivery-limit": self.delivery_limit,
            "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE,
            "x-dead-letter-routing-key": queue,
        })
        for key in binding_keys:
            await consumer_queue.bind(exchange, routing_key=key)
        turns = SubjectTurns()

        async def on_message(message: AbstractIncomingMessage) -> None:
            # Deliveries arrive as concurrent tasks (at most `prefetch` in flight): events of
            # different subjects (calls) are handled in parallel, those of one subject in queue
            # order, which is the only order consumers rely on.
            async with turns.turn(_subject_of(message)):
                await self._handle(queue, message, handler)

        await consumer_queue.consume(on_message)

    async def _handle(self, queue: str, message: AbstractIncomingMessage, handler: Handler) -> None:
        try:
            envelope = Envelope.model_validate(json.loads(message.body))
        except Exception:
            log.error("undecodable message dead-lettered", queue=queue, message_id=message.message_id)
            await message.reject(requeue=False)
            return
        try:
            await handler(envelope)
        except asyncio.CancelledError:
            raise
        except Exception:
            delivery_count = (message.headers or {}).get("x-delivery-count", 0)
            attempt = (delivery_count if isinstance(delivery_count, int) else 0) + 1
            log.warning("delivery failed", queue=queue, event_type=envelope.type,
                        event_id=envelope.id, attempt=attempt, exc_info=True)
            await asyncio.sleep(min(2.0, 0.1 * attempt))
            await message.nack(requeue=True)
            return
        await message.ack()


def _subject_of(message: AbstractIncomingMessage) -> str:
    subject = (message.headers or {}).get("ce-subject")
    if isinstance(subject, str):
        return subject
    try:
        return str(json.loads(message.body).get("subject", ""))
    except Exception:
        return ""


class SubjectTurns:
    """FIFO turns per key: tasks asking for the same key run one at a time in the order they
    asked; different keys run concurrently. Locks are dropped once nobody holds or awaits them."""

    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}
        self._users: dict[str, int] = {}

    @contextlib.asynccontextmanager
    async def turn(self, key: str) -> AsyncIterator[None]:
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._users[key] = self._users.get(key, 0) + 1
        try:
            async with lock:
                yield
        finally:
            self._users[key] -= 1
            if not self._users[key]:
                del self._users[key], self._locks[key]
