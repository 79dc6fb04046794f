"""The gateway on a real RabbitMQ broker: its consumer queue is bound and its outbox relays."""

from __future__ import annotations

import pytest

from shared.bus.rabbit import RabbitBus
from tests.cti_gateway.harness import serve

pytestmark = pytest.mark.integration


async def test_call_events_over_rabbitmq(common, auth, amqp_url) -> None:
    bus = RabbitBus(amqp_url, connection_name="cti-test")
    await bus.start()
    try:
        async with serve(common, auth, bus=bus) as gw, gw.switch() as switch:
            await switch.invite("R1")
            offered = await gw.observer.wait("cti.call.offered", "R1")
            assert offered.source == "/hotline/cti_gateway"
            await gw.publish("ivr.prompt.requested", {
                "call_id": "R1", "session_id": "S1", "prompt_id": "welcome",
                "text": "Welcome"}, call_id="R1")
            play = await switch.expect_request("INFO", "caller")
            assert play["play"]["prompt_id"] == "welcome"
            cseq = await switch.request("INFO", "R1", "caller", dtmf="2")
            await switch.expect_response(cseq)
            dtmf = await gw.observer.wait("cti.call.dtmf_received", "R1")
            assert dtmf.data["prompt_id"] == "welcome"
    finally:
        await bus.close()
