"""The batching writer: many units in one commit, a failing unit fails alone, a writer without
sessions keeps its own connection (and gets a new one when the server drops it), and the
publisher's lazy marks."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from shared.bus.memory import MemoryBus
from shared.db import driver_url
from shared.messaging import Transaction
from tests.conftest import eventually, running
from tests.shared.kit_service import create_app

INSERT = "INSERT INTO kit.notes (call_id, seen) VALUES ($1, $2)"


async def noted(service) -> set[str]:
    async with service.engine.connect() as conn:
        raw = (await conn.get_raw_connection()).driver_connection
        return {row["call_id"] for row in await raw.fetch("SELECT call_id FROM kit.notes")}


def writing(call_id: str, *, fail: bool = False):
    async def work(tx: Transaction) -> str:
        await tx.execute(INSERT, call_id, "direct")
        if fail:
            raise ValueError(f"{call_id} refuses")
        return call_id
    return work


async def test_concurrent_units_share_commits_and_a_failing_one_fails_alone(common) -> None:
    app = create_app(common, bus=MemoryBus())
    async with running(app):
        service = app.state.service
        futures = [service.messaging.submit(writing(f"C{i}", fail=i == 7)) for i in range(200)]
        results = await asyncio.gather(*futures, return_exceptions=True)
        assert isinstance(results[7], ValueError)
        assert [r for i, r in enumerate(results) if i != 7] == [f"C{i}" for i in range(200)
                                                                if i != 7]
        assert await noted(service) == {f"C{i}" for i in range(200)} - {"C7"}


async def test_batch_of_queued_units_commits_once(common) -> None:
    app = create_app(common, bus=MemoryBus())
    async with running(app):
        service = app.state.service
        commits = service.db_stats.commits
        await asyncio.gather(*(service.messaging.submit(writing(f"B{i}")) for i in range(100)))
        assert await noted(service) == {f"B{i}" for i in range(100)}
        assert service.db_stats.commits - commits <= 3


async def test_writer_without_sessions_owns_a_connection_and_replaces_a_dropped_one(
        common) -> None:
    app = create_app(common, bus=MemoryBus())
    service = app.state.service
    service.writer_sessions = False
    async with running(app):
        messaging = service.messaging

        async def with_session(tx: Transaction) -> None:
            tx.session  # noqa: B018 - the access is what is refused
        with pytest.raises(RuntimeError, match="no session"):
            await messaging.run(with_session)

        assert await messaging.run(writing("W1")) == "W1"
        first = await messaging.writer_connection()
        pid = first.get_server_pid()
        # The server drops the writer's connection while it is idle.
        killer = await asyncpg.connect(driver_url(service.engine))
        try:
            assert await killer.fetchval("SELECT pg_terminate_backend($1)", pid)
        finally:
            await killer.close()
        await eventually(first.is_closed, timeout=5)
        assert await messaging.run(writing("W2")) == "W2"
        assert (await messaging.writer_connection()).get_server_pid() != pid
        assert await noted(service) == {"W1", "W2"}


async def test_confirmed_events_are_marked_sent_within_mark_seconds(common, auth) -> None:
    from tests.conftest import bearer

    app = create_app(common, bus=MemoryBus())
    async with running(app) as client:
        service = app.state.service
        for call in ("M1", "M2", "M3"):
            await client.post("/offers", json={"call_id": call, "from_number": "+861"},
                              headers=bearer(auth, "switch"))
        await eventually(lambda: len(service.seen) == 3)

        async def all_marked() -> bool:
            async with service.engine.connect() as conn:
                raw = (await conn.get_raw_connection()).driver_connection
                return await raw.fetchval(service.messaging.sql.pending) == 0
        # Without anyone asking (pending_count would flush them), the marks land shortly
        # after the confirms, in one statement.
        await eventually(all_marked, timeout=5)


async def test_effects_are_carried_out_in_order_and_only_after_a_commit(common) -> None:
    """``tx.apply``: events into the outbox now; the timer woken and the after-commit
    actions run once committed, in order; none of it when the unit fails."""
    from datetime import UTC, datetime

    from shared.effects import AfterCommit, Emit, Wake
    from shared.events.cti import CallOffered

    class Alarm:
        def __init__(self) -> None:
            self.woken: list[datetime | None] = []

        def schedule(self, due: datetime | None) -> None:
            self.woken.append(due)

    app = create_app(common, bus=MemoryBus())
    async with running(app):
        service = app.state.service
        alarm, order = Alarm(), []
        due = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)

        def unit(call_id: str, *, fail: bool = False):
            async def work(tx: Transaction) -> None:
                async def note() -> None:
                    order.append((call_id, len(alarm.woken)))

                offered = CallOffered(call_id=call_id, from_number="+861", to_number="95598",
                                      offered_at=tx.now)
                await tx.apply([Emit(offered, f"call/{call_id}", call_id), Wake(alarm, due),
                                Wake(alarm, None), AfterCommit(note)])
                assert order == [] or fail  # nothing ran before the commit
                if fail:
                    raise ValueError("refused")
            return work

        await service.messaging.run(unit("E1"))
        assert alarm.woken == [due] and order == [("E1", 1)]
        with pytest.raises(ValueError):
            await service.messaging.run(unit("E2", fail=True))
        assert alarm.woken == [due] and order == [("E1", 1)]
        await eventually(lambda: [e.data["call_id"] for e in service.seen] == ["E1"])


async def test_a_resent_event_is_caught_by_the_inbox_at_the_commit_and_handled_once(
        common) -> None:
    """A first delivery is not looked up before its handler runs. When it is a publisher's
    resend of an event already handled (redelivered false), the inbox insert at the commit
    finds it: the batch is undone, its items run alone (each looked up first), the other
    items are handled once and the resend changes nothing (no second outbox row, no
    after-commit action)."""
    from datetime import UTC, datetime

    from shared.consumers import Consumes
    from shared.envelope import Envelope
    from shared.events.cti import CallAnswered, CallReleased

    bus = MemoryBus()
    app = create_app(common, bus=bus)
    service = app.state.service
    handled: list[str] = []
    consumes = Consumes()

    # (cti.call.answered: the kit's own consumer, whose insert would refuse a duplicate by
    # itself, does not take it.)
    @consumes.on(CallAnswered)
    async def tally(tx: Transaction, event: CallAnswered) -> None:
        async def note() -> None:
            handled.append(event.call_id)

        await tx.emit(CallReleased(call_id=event.call_id, direction="inbound",
                                   cause="caller_hangup", state="in_ivr",
                                   from_number=event.from_number, to_number=event.to_number,
                                   released_at=tx.now),
                      subject=f"call/{event.call_id}")
        tx.after_commit(note)

    service.consume("tally", consumes, staged=True)

    def answered(call_id: str) -> Envelope:
        return Envelope(source="/switch", type="cti.call.answered", time=datetime.now(UTC),
                        subject=f"call/{call_id}", sequence=1,
                        data={"call_id": call_id, "direction": "inbound",
                              "from_number": "+861", "to_number": "95598"})

    async def released_rows() -> list[str]:
        async with service.engine.connect() as conn:
            raw = (await conn.get_raw_connection()).driver_connection
            return [row["subject"] for row in await raw.fetch(
                "SELECT subject FROM kit.outbox WHERE type = 'cti.call.released'"
                " ORDER BY id")]

    async with running(app):
        first = answered("R1")
        await bus.publish(first)
        await eventually(lambda: handled == ["R1"])
        # The resend and a new event arrive together: one batch for the writer.
        await asyncio.gather(bus.publish(first), bus.publish(answered("R2")))
        await eventually(lambda: sorted(handled) == ["R1", "R2"])
        await asyncio.sleep(0.2)
        assert sorted(handled) == ["R1", "R2"]
        assert await released_rows() == ["call/R1", "call/R2"]
        metrics = service.metrics._consumed
        assert metrics.labels("kit.tally", "cti.call.answered", "duplicate")._value.get() == 1
