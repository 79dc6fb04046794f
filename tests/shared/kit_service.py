"""A minimal service built with the kit, used to test the kit itself (and as a template)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Depends
from pydantic import BaseModel
from sqlalchemy import Column, MetaData, String, Table, select

from shared.auth import require
from shared.bus import Bus
from shared.clock import Clock
from shared.consumers import Consumes
from shared.envelope import Envelope
from shared.events.cti import CallOffered
from shared.messaging import Transaction
from shared.service import Service, service_of
from shared.settings import CommonSettings, ServiceSettings

metadata = MetaData(schema="kit")
notes = Table("notes", metadata, Column("call_id", String, primary_key=True),
              Column("seen", String, nullable=False))


class KitSettings(ServiceSettings):
    pass


class Offer(BaseModel):
    call_id: str
    from_number: str


def create_app(common: CommonSettings, *, bus: Bus | None = None, clock: Clock | None = None):
    service = Service("kit", "kit", KitSettings(common=common), metadata=metadata,
                      migrations_dir=Path(__file__).parent / "kit_migrations", bus=bus, clock=clock)
    seen: list[Envelope] = []
    service.seen = seen  # type: ignore[attr-defined]

    consumes = Consumes()

    @consumes.on(CallOffered)
    async def on_offered(tx: Transaction, event: CallOffered) -> None:
        cause = tx.cause
        assert cause is not None

        async def handled() -> None:  # only what committed: a duplicate's run is undone
            seen.append(cause)

        tx.after_commit(handled)
        await tx.session.execute(notes.insert().values(call_id=event.call_id,
                                                       seen=tx.cause.type))

    service.consume("notes", consumes)

    router = APIRouter()

    @router.post("/offers", dependencies=[Depends(require("switch"))])
    async def offer(body: Offer, svc: Service = Depends(service_of)) -> dict[str, int]:
        async with svc.transaction() as tx:
            env = await tx.emit(CallOffered(
                call_id=body.call_id, from_number=body.from_number, to_number="95598",
                offered_at=tx.now), subject=f"call/{body.call_id}", correlationid=body.call_id)
        return {"sequence": env.sequence}

    @router.get("/notes", dependencies=[Depends(require("agent"))])
    async def list_notes(svc: Service = Depends(service_of)) -> list[str]:
        async with svc.sessions() as session:
            return list((await session.execute(select(notes.c.call_id))).scalars())

    return service.create_app(title="kit", description="test service", routers=[router])
