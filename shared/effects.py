"""What a unit of work does besides writing its tables, as values: a handler gathers them
(a domain core may give the events) and ``tx.apply(effects)`` carries them out in order:

- :class:`Emit`: a catalog event into the outbox, in this transaction;
- :class:`Wake`: a deadline this transaction wrote, told to its timer once committed;
- :class:`AfterCommit`: anything else that must wait for the commit (a reply, commands to a
  switch), run in order after it and never if the transaction rolls back.

Plain values, no I/O: domain cores may build them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from shared.events import EventData


class Schedulable(Protocol):
    def schedule(self, due: datetime | None) -> None: ...


@dataclass(frozen=True)
class Emit:
    event: EventData
    subject: str
    correlationid: str | None = None


@dataclass(frozen=True)
class Wake:
    timer: Schedulable
    due: datetime | None


@dataclass(frozen=True)
class AfterCommit:
    action: Callable[[], Awaitable[None]]


Effect = Emit | Wake | AfterCommit
