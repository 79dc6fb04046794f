"""What a finished replay must satisfy, checked from the services' own APIs."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from services.softswitch.trace import parse_trace
from services.workorder.domain.orders import LINKABLE_STATES, OrderState


@dataclass
class Findings:
    problems: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def fail(self, message: str) -> None:
        self.problems.append(message)

    def count(self, key: str, n: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + n


async def get_json(client: httpx.AsyncClient, url: str, **params: Any) -> Any:
    response = await client.get(url, params=params)
    response.raise_for_status()
    return response.json()


async def check_replay(urls: dict[str, str], headers: dict[str, str], trace_path: Path,
                       replay_id: str) -> Findings:
    found = Findings()
    trace, _ = parse_trace(trace_path.read_text())
    trace_calls = {call.id: call for call in trace.calls}
    known_numbers = {customer.ani for customer in trace.customers}
    async with httpx.AsyncClient(headers=headers, timeout=30) as client:
        calls = await get_json(client, f"{urls['softswitch']}/v1/replays/{replay_id}/calls")
        calls = calls if isinstance(calls, list) else calls["calls"]
        if len(calls) != len(trace_calls):
            found.fail(f"replay has {len(calls)} calls, trace {len(trace_calls)}")
        for call in calls:
            spec = trace_calls[call["trace_call_id"]]
            outcome = call["outcome"]
            found.count(f"outcome:{outcome}")
            if outcome not in ("answered", "abandoned", "self_served"):
                found.fail(f"{call['call_id']}: outcome {outcome}")
            cti = await client.get(f"{urls['cti_gateway']}/v1/calls/{call['call_id']}")
            if cti.status_code != 200:
                found.fail(f"{call['call_id']}: CTI answered {cti.status_code} ({outcome})")
            elif cti.json()["state"] != "released":
                found.fail(f"{call['call_id']}: CTI state {cti.json()['state']}")
            recordings = await get_json(client, f"{urls['recording']}/v1/recordings",
                                        call_id=call["call_id"])
            orders = await get_json(client, f"{urls['workorder']}/v1/orders",
                                    call_id=call["call_id"])
            orders = orders if isinstance(orders, list) else orders.get("orders", orders)
            if outcome == "answered":
                if len(recordings) != 1 or recordings[0]["state"] != "stored":
                    found.fail(f"{call['call_id']}: recordings {[(r['state'], r['duration_seconds']) for r in recordings]}")
                elif abs(recordings[0]["duration_seconds"] - spec.talk) > 1.0:
                    found.fail(f"{call['call_id']}: recording {recordings[0]['duration_seconds']}s, talk {spec.talk}s")
                else:
                    found.count("recordings_ok")
                wants_order = spec.disposition is not None and spec.disposition.workorder is not None
                if len(orders) != (1 if wants_order else 0):
                    found.fail(f"{call['call_id']}: {len(orders)} work orders, disposition {wants_order}")
                if wants_order and len(orders) == 1:
                    order = await get_json(client, f"{urls['workorder']}/v1/orders/{orders[0]['order_id']}")
                    check_callback(found, call["call_id"], spec, order)
            else:
                if recordings:
                    found.fail(f"{call['call_id']}: {outcome} call has recordings {[(r['state'], r['duration_seconds']) for r in recordings]}")
                if orders:
                    found.fail(f"{call['call_id']}: {outcome} call has work orders")
                if outcome == "abandoned":
                    # Every abandoned call from an identified customer: one callback request.
                    requests = await get_json(client, f"{urls['workorder']}/v1/orders",
                                              abandoned_call_id=call["call_id"])
                    wanted = 1 if spec.from_ in known_numbers else 0
                    kinds = [order["type"] for order in requests]
                    if kinds != ["callback_request"] * wanted:
                        found.fail(f"{call['call_id']}: abandoned, callback requests {kinds}")
                    else:
                        found.count("callback_requests", wanted)
        queues = await get_json(client, f"{urls['acd_router']}/v1/queues")
        for queue in queues if isinstance(queues, list) else queues.get("queues", []):
            if queue.get("waiting", 0):
                found.fail(f"queue {queue.get('name') or queue.get('queue')} still has waiting calls")
        agents = await get_json(client, f"{urls['acd_router']}/v1/agents")
        for agent in agents if isinstance(agents, list) else agents.get("agents", []):
            if agent["state"] in ("reserved", "on_call"):
                found.fail(f"agent {agent['agent_id']} stuck {agent['state']}")
    return found


def joined_since_resolution(order: dict[str, Any], reporter: dict[str, Any]) -> bool:
    """Whether the reporter joined an order that is open and not resolved since they joined."""
    resolved = [datetime.fromisoformat(step["at"]) for step in order.get("history", [])
                if step["action"] == "resolve"]
    return OrderState(order["state"]) in LINKABLE_STATES and (
        not resolved or datetime.fromisoformat(reporter["linked_at"]) > max(resolved))


def check_callback(found: Findings, call_id: str, spec: Any, order: dict[str, Any]) -> None:
    """The call's own callbacks (as the order's caller, or as a reporter linked to it) went as
    the trace says; the order ended as its latest round of callbacks decides."""
    if order.get("call_id") == call_id:
        party = None
    else:
        joined = [r for r in order.get("reporters", []) if r["call_id"] == call_id]
        if len(joined) != 1:
            found.fail(f"{call_id}: not on order {order['order_id']}'s callback list")
            return
        party = joined[0]["reporter_id"]
        found.count("linked_reports")
    callbacks = [cb for cb in order["callbacks"] if cb.get("reporter_id") == party]
    if not callbacks and party is not None and joined_since_resolution(order, joined[0]):
        # Joined work still under way (a reopened order the replay's agents leave to the
        # crew): the callback is owed when it is resolved again.
        found.count("awaiting_rework")
        return
    if not callbacks:
        found.fail(f"{call_id}: order {order['order_id']} ({order['state']}) has no callback "
                   "for this caller")
        return
    wanted = spec.disposition.callback
    never = wanted is None or wanted.answer_on_attempt is None
    for callback in callbacks:
        if never and callback["state"] != "unreachable":
            found.fail(f"{call_id}: never-answering callback ended {callback['state']}")
            return
        if not never and (callback["state"] != "completed"
                          or callback.get("satisfaction") != wanted.satisfaction):
            found.fail(f"{call_id}: callback {callback['state']} {callback.get('satisfaction')}, "
                       f"trace {wanted.satisfaction} on attempt {wanted.answer_on_attempt}")
            return
    latest = [cb for cb in order["callbacks"] if cb["resolution"] == order["resolution"]]
    unhappy = any(cb["state"] == "unreachable" or cb.get("satisfaction") == "dissatisfied"
                  for cb in latest)
    expected_state = "reopened" if unhappy else "closed"
    if order["state"] != expected_state:
        found.fail(f"{call_id}: order {order['state']} after callbacks "
                   f"{[(cb['state'], cb.get('satisfaction')) for cb in latest]}")
    found.count("callbacks_unreachable" if never else "callbacks_completed")


def personal_data_in_logs(trace_path: Path, log_dir: Path) -> list[str]:
    """Log lines holding a phone number or a customer name from the trace (any spelling of
    the number: with its +, without it, URL-encoded)."""
    text = trace_path.read_text()
    numbers = {m.group(1) for m in re.finditer(r'"\+(\d{7,15})"', text)}
    names = {m.group(1) for m in re.finditer(r'"kind":"customer".*?"name":"([^"]+)"', text)}
    wanted = re.compile("|".join(re.escape(v) for v in sorted(numbers | names, key=len,
                                                               reverse=True)))
    found = []
    for path in sorted(log_dir.glob("*.log")):
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if wanted.search(line):
                found.append(f"{path.name}:{number}: {line[:300]}")
    return found
