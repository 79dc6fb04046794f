"""The replay report: the hotline's service measures over one replay (DESIGN §8), in trace
seconds. Pure: computed from per-call outcomes and what workorder says about the orders."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from statistics import fmean
from typing import Any

SHORT_ABANDON_SECONDS = 5.0
SERVICE_LEVEL_SECONDS = 20.0
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
    # From workorder: {"settled", "state", "satisfaction", "attempts"}.
    callback: dict[str, Any] = field(default_factory=dict)


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def compute_report(calls: Iterable[CallOutcome], orders: Iterable[OrderOutcome], *,
                   drained: bool = True) -> dict[str, Any]:
    calls = list(calls)
    orders = list(orders)
    offered = [c for c in calls if c.placed_at is not None]
    answered = [c for c in calls if c.connected_at is not None]
    abandoned = [c for c in calls if c.outcome == "abandoned"]
    short = [c for c in abandoned if c.queued_at is not None and c.ended_at is not None
             and c.ended_at - c.queued_at < SHORT_ABANDON_SECONDS]
    queued = [c for c in calls if c.queued_at is not None]
    waits = [c.connected_at - c.queued_at for c in answered
             if c.connected_at is not None and c.queued_at is not None]
    within = [w for w in waits if w <= SERVICE_LEVEL_SECONDS]
    sl_base = len(queued) - len(short)
    talks = [c.talk for c in answered if c.talk is not None]

    resolved = [o for o in orders if o.resolved]
    settled = [o for o in resolved if o.callback.get("settled")]
    completed = [o for o in settled if o.callback.get("state") == "completed"]
    unreachable = [o for o in settled if o.callback.get("state") == "unreachable"]
    satisfaction = Counter(o.callback.get("satisfaction") for o in completed)
    open_calls = [{"id": c.id, "state": c.state} for c in calls if c.ended_at is None]
    open_orders = [o.order_id for o in resolved if not o.callback.get("settled")]

    return {
        "offered": len(offered),
        "offered_to_queue": len(queued),
        "answered": len(answered),
        "abandoned": len(abandoned),
        "short_abandons": len(short),
        "self_served": sum(1 for c in calls if c.outcome == "self_served"),
        "outcomes": {name: sum(1 for c in calls if c.outcome == name) for name in OUTCOMES},
        "answer_rate": _round(len(answered) / len(queued) if queued else None, 4),
        "abandon_rate": _round(len(abandoned) / len(queued) if queued else None, 4),
        "service_level": _round(len(within) / sl_base if sl_base > 0 else None, 4),
        "service_level_threshold_seconds": SERVICE_LEVEL_SECONDS,
        "asa_seconds": _round(fmean(waits) if waits else None),
        "average_talk_seconds": _round(fmean(talks) if talks else None),
        "work_orders_created": len(orders),
        "orders_resolved": len(resolved),
        "callbacks_done": len(settled),
        "callbacks_completed": len(completed),
        "callbacks_unreachable": len(unreachable),
        "callback_completion_rate": _round(len(settled) / len(resolved) if resolved else None, 4),
        "satisfaction": {name: satisfaction.get(name, 0)
                         for name in ("satisfied", "neutral", "dissatisfied")}
                        | {"no_answer": sum(1 for o in completed
                                            if not o.callback.get("satisfaction"))},
        "drained": drained,
        "open": {"calls": open_calls, "orders": open_orders},
    }
