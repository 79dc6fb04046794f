"""RabbitMQ bus (aio-pika).

Topology, declared idempotently by every process:

- ``hotline.events``: durable topic exchange all events go to. An event no queue is bound for
  is dropped by the broker (nobody would read it; integrators bind queues of their own). When
  ``keep_unrouted`` is on, the alternate exchange ``hotline.unrouted`` (fanout) keeps them in
  a bounded queue instead.
- one durable quorum queue per consumer, with an explicit ``x-delivery-limit`` (3.10 has no
  default) and dead-lettering to ``hotline.dlx`` into ``<queue>.dlq``.

Publishes are confirmed; :meth:`RabbitBus.publish_many` has a whole batch in flight at once.
Consumers ack only after the handler's transaction has committed: :meth:`RabbitBus.subscribe`
acks after the handler returned, :meth:`RabbitBus.consume` hands deliveries to a batching
receiver and coalesces its acks into multiple-acks. A failure nacks with requeue, which counts
towards the delivery limit. The connection is robust: channels, queues and consumers are
restored after the broker drops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import deque
from collections.abc import AsyncIterator, Sequence
from typing import Any

import aio_pika
import structlog
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractRobustConnection,
)
from aiormq import spec
from aiormq.abc import AbstractChannel as RawChannel

from shared.bus.base import Handler, OnDelivery, check_publishable
from shared.envelope import Envelope

log = structlog.get_logger(__name__)

EXCHANGE = "hotline.events"
UNROUTED_EXCHANGE = "hotline.unrouted"
DEAD_LETTER_EXCHANGE = "hotline.dlx"


class RabbitBus:
    def __init__(self, url: str, *, connection_name: str = "hotline", delivery_limit: int = 5,
                 keep_unrouted: bool = False, prefetch: int = 16,
                 batch_prefetch: int = 512) -> None:
        self.url = url
        self.connection_name = connection_name
        self.delivery_limit = delivery_limit
        self.keep_unrouted = keep_unrouted
        self.prefetch = prefetch
        # Consumers that settle deliveries in batches (shared.messaging's writer) need room
        # for a whole batch in flight.
        self.batch_prefetch = batch_prefetch
        self._ackers: dict[int, _Acker] = {}
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
        if await self._exchange_exists(EXCHANGE):
            # Declared before, maybe with the other unrouted setting: an exchange's arguments
            # cannot change, and either way it routes the same.
            return await channel.get_exchange(EXCHANGE, ensure=False)
        return await channel.declare_exchange(EXCHANGE, aio_pika.ExchangeType.TOPIC,
                                              durable=True, arguments=arguments)

    async def _exchange_exists(self, name: str) -> bool:
        assert self.connection is not None
        # A failed passive declare closes its channel, so use one of its own.
        probe = await self.connection.channel()
        try:
            await probe.declare_exchange(name, passive=True)
            return True
        except aio_pika.exceptions.ChannelClosed:
            return False
        finally:
            with contextlib.suppress(Exception):
                await probe.close()

    async def close(self) -> None:
        if self.connection is not None:
            await self.connection.close()
            self.connection = None

    async def healthy(self) -> bool:
        return (self.connection is not None and not self.connection.is_closed
                and self._publish_channel is not None and not self._publish_channel.is_closed)

    def _properties(self, envelope: Envelope) -> spec.Basic.Properties:
        return spec.Basic.Properties(
            content_type="application/cloudevents+json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT.value,
            message_id=envelope.id,
            message_type=envelope.type,
            timestamp=envelope.time,
            headers={"ce-subject": envelope.subject, "ce-sequence": envelope.sequence,
                     "ce-source": envelope.source},
        )

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
        async with self._publish_lock:
            await self._exchange.publish(message, routing_key=envelope.routing_key,
                                         mandatory=False)

    async def publish_many(self, envelopes: Sequence[Envelope]) -> list[bool]:
        """All of them written to the channel at once, then every confirm awaited. Not
        mandatory: an event no queue is bound for is dropped by the broker at no cost
        (integrators bind their own queues), unless ``keep_unrouted`` keeps it."""
        if self._publish_channel is None:
            raise ConnectionError("bus not started")
        async with self._publish_lock:
            channel = await self._publish_channel.get_underlay_channel()
            # One task per message, started in order: each takes the channel's (FIFO) lock in
            # turn to write its frames, then all wait for their confirms together.
            confirms = [asyncio.ensure_future(channel.basic_publish(
                envelope.model_dump_json().encode(), exchange=EXCHANGE,
                routing_key=envelope.routing_key, properties=self._properties(envelope),
                wait=False))  # type: ignore[call-arg]
                for envelope in envelopes]
            results = await asyncio.gather(*confirms, return_exceptions=True)
        return [isinstance(result, spec.Basic.Ack) for result in results]

    async def consume(self, queue: str, binding_keys: list[str], on_delivery: OnDelivery
                      ) -> None:
        consumer_queue = await self._declare_consumer_queue(queue, binding_keys,
                                                            self.batch_prefetch)

        async def on_message(message: AbstractIncomingMessage) -> None:
            # Nothing is awaited before the hand-over, so deliveries reach the receiver in
            # the order the broker sent them.
            try:
                envelope = Envelope.model_validate_json(message.body)
            except Exception:
                log.error("undecodable message dead-lettered", queue=queue,
                          message_id=message.message_id)
                await message.reject(requeue=False)
                return
            raw = message.channel
            acker = self._ackers.get(id(raw))
            if acker is None or acker.channel is not raw:
                acker = self._ackers[id(raw)] = _Acker(raw)
            assert message.delivery_tag is not None
            acker.delivered(message.delivery_tag)
            on_delivery(_RabbitDelivery(envelope, bool(message.redelivered),
                                        message.delivery_tag, acker))

        await consumer_queue.consume(on_message)

    async def _declare_consumer_queue(self, queue: str, binding_keys: list[str], prefetch: int
                                      ) -> aio_pika.abc.AbstractQueue:
        if self.connection is None:
            raise ConnectionError("bus not started")
        channel = await self.connection.channel()
        await channel.set_qos(prefetch_count=prefetch)
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
        return consumer_queue

    async def subscribe(self, queue: str, binding_keys: list[str], handler: Handler) -> None:
        consumer_queue = await self._declare_consumer_queue(queue, binding_keys, self.prefetch)
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


class _Acker:
    """Settles one channel's deliveries in delivery-tag order: a run of acked deliveries goes
    as one multiple-ack, a nack goes on its own (before any ack that would cover it)."""

    def __init__(self, channel: RawChannel) -> None:
        self.channel = channel
        self._outstanding: deque[int] = deque()
        self._settled: dict[int, bool] = {}  # tag -> acked (False: nacked, requeue)
        self._flushing = False
        self._task: asyncio.Task[None] | None = None

    def delivered(self, tag: int) -> None:
        self._outstanding.append(tag)

    def settle(self, tag: int, ack: bool) -> None:
        self._settled[tag] = ack
        if not self._flushing:
            self._flushing = True
            self._task = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        try:
            while self._outstanding and self._outstanding[0] in self._settled:
                last_ack: int | None = None
                while self._outstanding and self._outstanding[0] in self._settled:
                    tag = self._outstanding.popleft()
                    if self._settled.pop(tag):
                        last_ack = tag
                        continue
                    if last_ack is not None:
                        await self.channel.basic_ack(last_ack, multiple=True, wait=False)
                        last_ack = None
                    await self.channel.basic_nack(tag, requeue=True, wait=False)
                if last_ack is not None:
                    await self.channel.basic_ack(last_ack, multiple=True, wait=False)
        except Exception as error:
            # The channel is gone: the broker delivers everything unacked on it again.
            log.warning("could not settle deliveries; the broker will redeliver them",
                        error=repr(error))
            self._outstanding.clear()
            self._settled.clear()
        finally:
            self._flushing = False


class _RabbitDelivery:
    __slots__ = ("_acker", "_tag", "envelope", "redelivered")

    def __init__(self, envelope: Envelope, redelivered: bool, tag: int, acker: _Acker) -> None:
        self.envelope = envelope
        self.redelivered = redelivered
        self._tag = tag
        self._acker = acker

    def ack(self) -> None:
        self._acker.settle(self._tag, True)

    def nack(self) -> None:
        self._acker.settle(self._tag, False)
