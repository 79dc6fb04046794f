"""REST commands and reads on calls: an agent's answer and release, a call, the listing."""

from __future__ import annotations

import structlog

from services.cti_gateway import db
from services.cti_gateway.domain import Call, CallState
from services.cti_gateway.handlers import Cti, apply, carry_out
from shared.auth import Principal
from shared.data_scope import DataScope
from shared.errors import Conflict, Forbidden, NotFound
from shared.messaging import Transaction

log = structlog.get_logger(__name__)


async def get_call(cti: Cti, call_id: str) -> Call:
    async with cti.service.sessions() as session:
        call = await db.load(session, call_id)
    if call is None:
        raise NotFound("call", call_id)
    return call


async def answer(cti: Cti, call_id: str, agent_id: str, *, by: Principal) -> Call:
    async def work(tx: Transaction) -> Call:
        call = await cti.calls.get(tx, call_id)
        if call is None:
            raise NotFound("call", call_id)
        by.check_directs(agent_id, call.team, call.department)
        effects = call.request_answer(agent_id)
        if cti.switchboard.carrier(call.switch_id) is None:
            raise Conflict(f"the switch carrying call {call_id!r} is not connected here")
        await carry_out(cti, tx, call, effects)
        return call

    answered: Call = await cti.service.run(work, staged=True)
    return answered


async def release(cti: Cti, call_id: str, agent_id: str | None, *, by: Principal) -> Call:
    async def work(tx: Transaction) -> Call:
        call = await cti.calls.get(tx, call_id)
        if call is None:
            raise NotFound("call", call_id)
        if not by.acts_for_others and call.live and not call.handled_by(agent_id):
            # A caller in the IVR or in a queue belongs to no agent: only a supervisor may
            # hang up on them (one of the whole floor: they are no team's yet).
            raise Forbidden(f"call {call_id!r} is not agent {agent_id!r}'s to release "
                            f"(it is {call.agent_id or 'with no agent'!r})")
        if by.acts_for_others and call.live:
            by.check_directs(call.agent_id or "(none)", call.team, call.department)
        effects = call.release("agent_release", tx.now)
        await apply(cti, tx, call, effects)
        return call

    released: Call = await cti.service.run(work, staged=True)
    log.info("call released on request", call_id=call_id, agent_id=agent_id)
    return released


async def list_calls(cti: Cti, state: CallState | None, limit: int, scope: DataScope, *,
                     live: bool = False) -> list[Call]:
    """Newest first, narrowed to what ``scope`` reads (an agent's own, a team's)."""
    async with cti.service.sessions() as session:
        return await db.list_calls(session, state, limit, live=live, agent_id=scope.agent,
                                   team=scope.team, department=scope.department)
