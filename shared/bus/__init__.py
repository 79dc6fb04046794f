"""The event bus: one interface, two implementations with the same semantics.

- :class:`~shared.bus.memory.MemoryBus` for the all-in-one process;
- :class:`~shared.bus.rabbit.RabbitBus` for distributed deployments.

Both: topic routing on ``<type>.v<version>``; one queue per consumer (``<service>.<purpose>``);
a failed handler is redelivered up to the delivery limit, then dead-lettered; publishing an
event whose type is not in the catalog raises before anything is sent.
"""

from shared.bus.base import (
    Bus,
    Delivery,
    Handler,
    OnDelivery,
    check_publishable,
    topic_matches,
)
from shared.bus.memory import MemoryBus
from shared.bus.rabbit import RabbitBus

__all__ = ["Bus", "Delivery", "Handler", "OnDelivery", "check_publishable", "make_bus",
           "topic_matches"]


def make_bus(amqp_url: str | None, *, connection_name: str, delivery_limit: int = 5,
             keep_unrouted: bool = False) -> Bus:
    if amqp_url:
        return RabbitBus(amqp_url, connection_name=connection_name,
                         delivery_limit=delivery_limit, keep_unrouted=keep_unrouted)
    return MemoryBus(delivery_limit=delivery_limit, keep_unrouted=keep_unrouted)
