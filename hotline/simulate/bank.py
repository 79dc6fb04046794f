"""The Technion SEE "Anonymous Bank" call-by-call CSV as a simulation scenario.

Column meanings and the file's quirks are in ``tests/data/README.md``. The mapping:

- arrival at ``vru_entry``; IVR time ``vru_time``; callers who hung up in the VRU never
  queue (they count as offered, not as offered to the queue);
- one queue ``bank``, served by every agent (the file has no skills);
- service time ``ser_time``; a call that was not served in the file has none, so it draws
  one from the served calls' service times (seeded);
- priority 2 is VIP, with the bank's 1.5 minute (90 s) queue credit;
- patience: an abandoned call's own queue time (that is when it hung up); a served call
  only tells us its patience exceeded its wait (a censored observation), so it draws from
  the Kaplan-Meier patience distribution of all queued calls, conditioned on exceeding the
  wait it had. Past the last observation the tail is exponential with the censored mean;
- agents on shift: every agent named in ``server`` for a call that started service in an
  hour is logged in for that whole hour (consecutive hours make one shift);
- PHANTOM rows (virtual calls) are left out; rows with impossible times are reported with
  their line number and skipped.
"""

from __future__ import annotations

import bisect
import csv
import io
import math
import random
from collections import defaultdict
from dataclasses import dataclass

from .model import CallRecord, Scenario, SimAgent, SimCall

QUEUE = "bank"
VIP_PRIORITY = "2"
BANK_VIP_CREDIT = 90.0
COLUMNS = ("vru+line", "call_id", "customer_id", "priority", "type", "date", "vru_entry",
           "vru_exit", "vru_time", "q_start", "q_exit", "q_time", "outcome", "ser_start",
           "ser_exit", "ser_time", "server")


@dataclass(frozen=True)
class RowError:
    line: int
    error: str

    def as_dict(self) -> dict[str, object]:
        return {"line": self.line, "error": self.error}


@dataclass(frozen=True)
class BankCall:
    line: int
    id: str
    vip: bool
    customer: str | None
    vru_entry: int
    vru_time: int
    q_start: int | None        # None: never queued (hung up in the VRU, or served directly)
    q_time: int
    outcome: str               # AGENT | HANG
    ser_start: int | None
    ser_time: int
    server: str | None


@dataclass
class BankDay:
    calls: list[BankCall]
    errors: list[RowError]
    phantoms: int


def _seconds(text: str) -> int:
    parts = text.strip().split(":")
    if len(parts) != 3:
        raise ValueError(f"time {text!r} is not H:MM:SS")
    h, m, s = (int(p) for p in parts)
    if not (0 <= h < 24 and 0 <= m < 60 and 0 <= s < 60):
        raise ValueError(f"time {text!r} is out of range")
    return h * 3600 + m * 60 + s


def _check_span(name: str, start: int, end: int, duration: int) -> None:
    if duration < 0:
        raise ValueError(f"{name}_time is negative ({duration} s)")
    if start and end and end < start:
        raise ValueError(f"{name}_exit is before {name}_entry")
    if start and end and end - start != duration:
        raise ValueError(f"{name}_time {duration} s does not match its times "
                         f"({end - start} s)")


def read_bank_csv(text: str) -> BankDay:
    reader = csv.reader(io.StringIO(text))
    calls: list[BankCall] = []
    errors: list[RowError] = []
    phantoms = 0
    header = next(reader, None)
    if header is None or tuple(h.strip() for h in header) != COLUMNS:
        return BankDay([], [RowError(1, "not the bank CSV header")], 0)
    for row in reader:
        line = reader.line_num
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) != len(COLUMNS):
            errors.append(RowError(line, f"{len(row)} fields, expected {len(COLUMNS)}"))
            continue
        f = dict(zip(COLUMNS, (cell.strip() for cell in row), strict=True))
        try:
            vru_entry, vru_exit = _seconds(f["vru_entry"]), _seconds(f["vru_exit"])
            q_start, q_exit = _seconds(f["q_start"]), _seconds(f["q_exit"])
            ser_start, ser_exit = _seconds(f["ser_start"]), _seconds(f["ser_exit"])
            vru_time, q_time, ser_time = (int(f["vru_time"]), int(f["q_time"]),
                                          int(f["ser_time"]))
            _check_span("vru", vru_entry, vru_exit, vru_time)
            _check_span("q", q_start, q_exit, q_time)
            _check_span("ser", ser_start, ser_exit, ser_time)
            if q_start and q_start < vru_exit:
                raise ValueError("q_start is before vru_exit")
            outcome = f["outcome"]
            if outcome not in ("AGENT", "HANG", "PHANTOM"):
                raise ValueError(f"unknown outcome {outcome!r}")
            if outcome == "AGENT" and not ser_start:
                raise ValueError("outcome AGENT without service times")
        except ValueError as error:
            errors.append(RowError(line, str(error)))
            continue
        if outcome == "PHANTOM":
            phantoms += 1
            continue
        served = outcome == "AGENT"
        server = f["server"] if f["server"] != "NO_SERVER" else None
        calls.append(BankCall(
            line=line, id=f"{f['vru+line']}/{f['call_id']}", vip=f["priority"] == VIP_PRIORITY,
            customer=None if f["customer_id"] in ("", "0") else f["customer_id"],
            vru_entry=vru_entry, vru_time=vru_time, q_start=q_start or None, q_time=q_time,
            outcome=outcome, ser_start=ser_start if served else None,
            ser_time=ser_time, server=server))
    calls.sort(key=lambda c: (c.vru_entry, c.line))
    return BankDay(calls, errors, phantoms)


def queued_at(call: BankCall) -> int | None:
    """When the caller started waiting for an agent: the queue start, or, for a call the
    VRU handed straight to an agent (no queue row), the VRU exit."""
    if call.q_start is not None:
        return call.q_start
    if call.outcome == "AGENT":
        return call.vru_entry + call.vru_time
    return None


def recorded_records(day: BankDay) -> list[CallRecord]:
    """What the bank recorded, as records the same measures read."""
    records = []
    for c in day.calls:
        record = CallRecord(c.id, QUEUE if queued_at(c) is not None else None, c.vip,
                            float(c.vru_entry))
        q = queued_at(c)
        if q is None:
            record.outcome = "self_served"
            record.ended = float(c.vru_entry + c.vru_time)
        elif c.outcome == "AGENT" and c.ser_start is not None:
            record.queued = float(q)
            # The file's ser_start is often one second before q_exit (rounding): never let
            # that make a negative wait.
            record.answered = record.routed = float(max(c.ser_start, q))
            record.ended = float(max(c.ser_start, q) + c.ser_time)
            record.outcome = "answered"
            record.talk = float(c.ser_time)
            record.agent = c.server
        else:
            record.queued = float(q)
            record.ended = float(q + c.q_time)
            record.routed = None if c.q_time > 0 else float(q)
            record.outcome = "abandoned"
        records.append(record)
    return records


class PatienceModel:
    """Kaplan-Meier estimate of patience from queued calls: abandoned waits are observed
    patience, served waits are right-censored (the caller would have waited longer)."""

    def __init__(self, abandoned: list[float], served: list[float]) -> None:
        events = sorted((w, 1) for w in abandoned) + sorted((w, 0) for w in served)
        events.sort()
        at_risk = len(events)
        survival = 1.0
        self.times: list[float] = []
        self.survival: list[float] = []   # S(t) just after each event time
        i = 0
        while i < len(events):
            t = events[i][0]
            died = censored = 0
            while i < len(events) and events[i][0] == t:
                died += events[i][1]
                censored += 1 - events[i][1]
                i += 1
            if died and at_risk:
                survival *= 1.0 - died / at_risk
                self.times.append(t)
                self.survival.append(survival)
            at_risk -= died + censored
        total = sum(abandoned) + sum(served)
        # Exponential tail beyond the last abandonment: rate = abandonments / exposure (the
        # maximum-likelihood rate for exponential patience with censoring).
        self.tail_mean = total / max(1, len(abandoned))
        self.last = self.times[-1] if self.times else 0.0
        self.tail_mass = self.survival[-1] if self.survival else 1.0

    def sf(self, t: float) -> float:
        if t >= self.last:
            return self.tail_mass * math.exp(-(t - self.last) / self.tail_mean)
        k = bisect.bisect_right(self.times, t)
        return 1.0 if k == 0 else self.survival[k - 1]

    def sample(self, rng: random.Random, above: float = 0.0) -> float:
        """Patience drawn from S, conditioned on exceeding ``above`` (inverse transform)."""
        target = rng.random() * self.sf(above)
        if target <= 0.0:
            return above
        if target < self.tail_mass:
            return self.last + self.tail_mean * math.log(self.tail_mass / target)
        # First event time whose survival drops to the target or below.
        lo, hi = 0, len(self.survival) - 1
        while lo < hi:
            mid = (lo + hi) // 2
            if self.survival[mid] <= target:
                hi = mid
            else:
                lo = mid + 1
        return max(above, self.times[lo])


def shifts(day: BankDay) -> list[SimAgent]:
    hours: dict[str, set[int]] = defaultdict(set)
    for c in day.calls:
        if c.server is not None and c.ser_start is not None:
            hours[c.server].add(c.ser_start // 3600)
    agents = []
    for name in sorted(hours):
        run: list[int] = []
        blocks: list[list[int]] = []
        for hour in sorted(hours[name]):
            if run and hour != run[-1] + 1:
                blocks.append(run)
                run = []
            run.append(hour)
        blocks.append(run)
        for n, block in enumerate(blocks):
            agent_id = name if n == 0 else f"{name}~{n + 1}"
            agents.append(SimAgent(id=agent_id, skills={QUEUE: 5}, login=block[0] * 3600.0,
                                   logout=(block[-1] + 1) * 3600.0, team="bank"))
    return agents


def bank_scenario(day: BankDay, *, seed: int = 1, name: str = "bank-day") -> Scenario:
    rng = random.Random(seed)
    served_waits: list[float] = []
    abandoned_waits: list[float] = []
    for c in day.calls:
        q = queued_at(c)
        if q is None:
            continue
        if c.outcome == "AGENT" and c.ser_start is not None:
            served_waits.append(float(max(0, c.ser_start - q)))
        else:
            abandoned_waits.append(float(c.q_time))
    patience = PatienceModel(abandoned_waits, served_waits)
    service_times = [float(c.ser_time) for c in day.calls
                     if c.outcome == "AGENT" and c.ser_time > 0]
    calls: list[SimCall] = []
    for c in day.calls:
        q = queued_at(c)
        if q is None:
            calls.append(SimCall(c.id, float(c.vru_entry), None, 0.0, ivr=float(c.vru_time),
                                 vip=c.vip, customer=c.customer))
            continue
        if c.outcome == "AGENT" and c.ser_start is not None:
            talk = float(c.ser_time)
            wait = float(max(0, c.ser_start - q))
            caller_patience = patience.sample(rng, above=wait)
        else:
            talk = float(c.ser_time) if c.ser_time > 0 else rng.choice(service_times)
            caller_patience = float(c.q_time)
        calls.append(SimCall(c.id, float(c.vru_entry), QUEUE, talk,
                             ivr=float(q - c.vru_entry), patience=caller_patience, vip=c.vip,
                             customer=c.customer))
    warnings = [f"line {e.line}: {e.error} (row skipped)" for e in day.errors]
    if day.phantoms:
        warnings.append(f"{day.phantoms} PHANTOM rows (virtual calls) left out")
    return Scenario(name, shifts(day), calls, warnings)
