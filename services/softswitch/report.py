"""The replay report: the hotline's service measures over one replay (DESIGN §8), in trace
seconds. Pure: computed from per-call outcomes and what workorder says about the orders.

The call measures are ``shared.measures`` (one definition with the ACD's real-time statistics
and the simulator); this module maps replayed calls onto it and adds the work-order side."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from statistics import fmean
from typing import Any

from shared.measures import (
    SERVICE_LEVEL_SECONDS,
    SHORT_ABANDON_SECONDS,
    CallFacts,
    measures_of,
)

__all__ = ["SERVICE_LEVEL_SECONDS", "SHORT_ABANDON_SECONDS", "CallOutcome", "OrderOutcome",
           "compute_report"]
OUTCOMES = ("answered", "abandoned", "self_served", "released_in_queue", "rejected", "failed")


@dataclass
class CallOutcome:
    id: str
    placed_at: float | None = None
    queued_at: float | None = None
    connected_at: float | None = None
    ended_at: float | None = None
    outcome: str | None = None
    talk: float | None = None
    state: str = "pending"


@dataclass
class OrderOutcome:
    order_id: str
    resolved: bool = False
    # From workorder: {"settled", "callbacks": [{"state", "satisfaction", "attempts", ...}]}.
    callback: dict[str, Any] = field(default_factory=dict)


def _facts(call: CallOutcome) -> CallFacts:
    """A queued call as the shared measures see it. An abandon without an end time (the
    replay lost the release) has an unknown wait: infinite, so it is never a short abandon."""
    assert call.queued_at is not None
    if call.connected_at is not None:
        return CallFacts("answered", call.connected_at - call.queued_at)
    if call.outcome == "abandoned":
        wait = math.inf if call.ended_at is None else call.ended_at - call.queued_at
        return CallFacts("abandoned", wait)
    return CallFacts("other")


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def compute_report(calls: Iterable[CallOutcome], orders: Iterable[OrderOutcome], *,
                   drained: bool = True) -> dict[str, Any]:
    calls = list(calls)
    orders = list(orders)
    offered = [c for c in calls if c.placed_at is not None]
    m = measures_of((_facts(c) for c in calls if c.queued_at is not None),
                    threshold=SERVICE_LEVEL_SECONDS, short_abandon=SHORT_ABANDON_SECONDS)
    talks = [c.talk for c in calls
             if c.queued_at is not None and c.connected_at is not None and c.talk is not None]

    resolved = [o for o in orders if o.resolved]
    # Every callback task counts (one per resolution and caller). A resolved order whose
    # callbacks were never read owes at least one that is not done.
    tasks = [cb for o in resolved for cb in o.callback.get("callbacks") or []]
    owed = len(tasks) + sum(1 for o in resolved if not o.callback.get("callbacks"))
    settled = [cb for cb in tasks if cb.get("settled")]
    completed = [cb for cb in settled if cb.get("state") == "completed"]
    unreachable = [cb for cb in settled if cb.get("state") == "unreachable"]
    satisfaction = Counter(cb.get("satisfaction") for cb in completed)
    open_calls = [{"id": c.id, "state": c.state} for c in calls if c.ended_at is None]
    open_orders = [o.order_id for o in resolved if not o.callback.get("settled")]

    return {
        "offered": len(offered),
        "offered_to_queue": m.offered,
        "answered": m.answered,
        "abandoned": m.abandoned,
        "short_abandons": m.short_abandons,
        "self_served": sum(1 for c in calls if c.outcome == "self_served"),
        "outcomes": {name: sum(1 for c in calls if c.outcome == name) for name in OUTCOMES},
        "answer_rate": _round(m.answer_rate, 4),
        "abandon_rate": _round(m.abandon_rate, 4),
        "service_level": _round(m.service_level, 4),
        "service_level_threshold_seconds": m.threshold,
        "asa_seconds": _round(m.asa),
        "average_talk_seconds": _round(fmean(talks) if talks else None),
        "work_orders_created": len(orders),
        "orders_resolved": len(resolved),
        "callbacks_done": len(settled),
        "callbacks_completed": len(completed),
        "callbacks_unreachable": len(unreachable),
        "callbacks_owed": owed,
        "callback_completion_rate": _round(len(settled) / owed if owed else None, 4),
        "satisfaction": {name: satisfaction.get(name, 0)
                         for name in ("satisfied", "neutral", "dissatisfied")}
                        | {"no_answer": sum(1 for cb in completed if not cb.get("satisfaction"))},
        "drained": drained,
        "open": {"calls": open_calls, "orders": open_orders},
    }
