"""Workorder's handlers, one module per aggregate: they sequence (gather facts, let the
domain decide, apply); rules live in ``domain/``, SQL for rows in ``repository``.

The :class:`Runtime` here is what every handler runs on: the callback policy and calling
rules, the working calendar (the shipped years with those stored over REST laid over them),
the SLA policy versions read so far and the timer loop's wake signal."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from services.workorder.domain import sla
from services.workorder.domain.calendar import WorkCalendar, parse_year
from services.workorder.domain.callbacks import CallbackPolicy
from services.workorder.domain.dialing import CallingRules
from services.workorder.domain.orders import OrderType
from services.workorder.domain.sla import SlaPolicy
from services.workorder.repository import clocks as clock_rows
from shared.db import Queries, Session
from shared.effects import Wake
from shared.messaging import Transaction

KNOWN_TYPES = tuple(t.value for t in OrderType)
POLICY_KEY = "workorder.sla_policy"


class Waker:
    """Tells the timer loop of a deadline once the transaction that wrote it has committed
    (the loop wakes early if it is nearer than its planned wake-up)."""

    def __init__(self) -> None:
        self.listener: Callable[[datetime], None] | None = None

    def schedule(self, due: datetime | None) -> None:
        if due is not None and self.listener is not None:
            self.listener(due)


@dataclass
class Runtime:
    callback_policy: CallbackPolicy
    rules: CallingRules
    calendar: WorkCalendar
    callback_team: str = "callback_team"
    repeat_complaint_days: float = 30
    waker: Waker = field(default_factory=Waker)
    _policies: dict[int, SlaPolicy] = field(default_factory=dict)
    # The shipped year files; years stored over REST are laid over them on every reload.
    base_calendar: WorkCalendar | None = None
    calendar_stamp: str | None = None

    async def refresh_calendars(self, session: Session) -> bool:
        """Reload the stored calendar years if they changed since the last look (a digest of
        every stored document: a PUT on any replica changes it). True when reloaded."""
        found = await clock_rows.calendar_years(session, unless_stamp=self.calendar_stamp)
        if found is None:
            return False
        stamp, years = found
        calendar = self.base_calendar or self.calendar
        for year, document in years:
            calendar = calendar.with_year(parse_year(document, year))
        # Deadlines already planned keep their times; new plans use the new years.
        self.calendar, self.calendar_stamp = calendar, stamp
        return True

    async def sla_policy(self, db: Queries) -> SlaPolicy:
        """The newest version, checked once per transaction so every replica uses the same
        one (the document is read and parsed once per version)."""
        if isinstance(db, Transaction) and POLICY_KEY in db.shared:
            cached: SlaPolicy = db.shared[POLICY_KEY]
            return cached
        version = await clock_rows.latest_policy_version(db)
        if version is None:
            raise RuntimeError("no SLA policy loaded")
        policy = self._policies.get(version)
        if policy is None:
            document = await clock_rows.policy_document(db, version)
            policy = sla.parse_policy(document, version, KNOWN_TYPES)
            self._policies[version] = policy
        if isinstance(db, Transaction):
            db.shared[POLICY_KEY] = policy
        return policy

    async def wake_after_commit(self, tx: Transaction, due: datetime | None) -> None:
        await tx.apply([Wake(self.waker, due)])
