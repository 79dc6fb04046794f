"""The cost of a call through the distributed suite, at stepped rates, against raw peers.

Each step replays a seeded open-loop trace at a fixed rate of calls per *wall* second through
the distributed suite (every service its own process, RabbitMQ on a private vhost,
PostgreSQL on a private database). A call is a whole one: the 95598 menu with the customer
lookup (callers are known customers; half press 1, the outage check and repair, half press
0 for billing), routing, the agent's answer, talk, release, a work order created and
resolved by the agent's desktop, and the customer's callback with its satisfaction survey.
Agents are plenty (nobody waits for lack of staff) and answer at once. Media forking is off
unless ``--media`` (its own cost is measured per minute of audio).

Per step: calls offered / completed / lost, the replay's wall time against the trace's, the
hops in wall ms (p50 / p99 / max), CPU-ms per call of every process (each service, the
broker's beam.smp, PostgreSQL: every server process plus the children it reaped), resident
memory, and per call the events published, deliveries consumed, commits and statements. The
hops, from the services' own outboxes (event times in suite time over the time scale):

- *routing*: the ACD queueing the call (``acd.call.queued``) → the agent reserved
  (``acd.agent.reserved``); with free agents both happen in one unit of work;
- *to the router*: ``ivr.session.completed`` → ``acd.call.queued`` (a bus hop);
- *answer chain*: reservation → ``cti.call.connected``;
- *release chain*: ``cti.call.released`` → the ACD's next agent state for that call.

CPU is read from /proc (utime + stime) before and after each step; the idle rate of every
process, taken over a quiet window before the first step, gives the *marginal* cost (what a
call adds) beside the gross one. The peers, measured in the same run on this machine: raw
aio-pika persistent publishes with confirms and consumes (manual ack) on one quorum queue, one
at a time and 64 in flight; single-row commits from one asyncpg connection.

    python -m bench.suite_load                      # the default steps, then the peers
    python -m bench.suite_load --rates 5,10 --step-seconds 20 --open-calls 0
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from tests.conftest import AMQP_BASE, create_database, drop_database, private_vhost
from tests.e2e.harness import admin_headers, base_environment, distributed_suite

# The suite before the lean event path (commit 9a2880a), measured on this machine with
# ``--rates 5,10 --no-stop --open-calls 0``.
BEFORE = Path(__file__).parent / "results" / "suite_load_before.json"
START = "2026-07-15T09:00:00+08:00"  # a working Wednesday: callbacks are in calling hours
SERVICES = ("cti_gateway", "acd_router", "ivr_engine", "workorder", "recording", "softswitch")
SCHEMAS = {"cti_gateway": "cti", "acd_router": "acd", "ivr_engine": "ivr",
           "workorder": "workorder", "recording": "recording", "softswitch": "softswitch"}
SHORT = {"cti_gateway": "cti", "acd_router": "acd", "ivr_engine": "ivr", "workorder": "wo",
         "recording": "rec", "softswitch": "ss (load)", "beam": "rabbitmq", "postgres": "pg"}
CLOCK_TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def log(message: str) -> None:
    print(f"[suite_load] {message}", file=sys.stderr, flush=True)


# -- the trace ---------------------------------------------------------------------------------

def load_trace(*, rate: float, seconds: float, speed: float, talk: float, seed: int,
               name: str, lead_in: float = 10.0, agents: int | None = None) -> tuple[str, int]:
    """``rate`` calls per wall second for ``seconds`` wall seconds at replay ``speed``: Poisson
    arrivals, exponential talk (mean ``talk`` trace s), every caller a known customer with a
    work order and a satisfied callback. Returns the JSON Lines and the number of calls."""
    rng = random.Random(seed)
    trace_rate = rate / speed
    span = seconds * speed
    times: list[float] = []
    t = 0.0
    while True:
        t += rng.expovariate(trace_rate)
        if t > span:
            break
        times.append(t)
    # Agents enough that nobody waits: the trace-time load (arrivals x holding) with a wide
    # margin, holding being talk, wrap-up and the answer.
    needed = agents or int(trace_rate * (talk + 2.0) * 1.5) + 20
    lines: list[dict[str, Any]] = [{"kind": "header", "format": "hotline-trace/1", "name": name,
                                    "start": START, "seed": seed}]
    logout = lead_in + span + 3600.0
    for index in range(needed):
        skills = {"repair": 5, "billing": 5}
        lines.append({"kind": "agent", "id": f"{name}-A{index:05d}", "team": f"T{index % 8}",
                      "skills": skills, "login": 0, "logout": logout, "answer_after": 0.0,
                      "wrapup": 2.0})
    for index, at in enumerate(times):
        ani = f"+86139{seed % 100:02d}{index:06d}"
        area = f"A-{index % 40:03d}"
        lines.append({"kind": "customer", "ani": ani, "account": f"{name}-{index:07d}",
                      "name": f"load {index}", "tier": "regular", "area": area, "flags": []})
        repair = index % 2 == 0
        lines.append({
            "kind": "call", "id": f"L{index:07d}", "at": round(lead_in + at, 3), "from": ani,
            "to": "95598", "dtmf": ["1"] if repair else ["0"], "think": 0.5, "patience": None,
            "talk": round(rng.expovariate(1.0 / talk), 2),
            "disposition": {
                "workorder": {"type": "repair" if repair else "consultation", "area": area,
                              "reply": "done"},
                "callback": {"answer_on_attempt": 1, "satisfaction": "satisfied"}}})
    return "\n".join(json.dumps(line, ensure_ascii=False) for line in lines) + "\n", len(times)


# -- /proc ---------------------------------------------------------------------------------------

def _stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2:].split()


def cpu_seconds(pid: int, children: bool = False) -> float:
    fields = _stat(pid)
    if fields is None:
        return 0.0
    # utime, stime are fields 14, 15; cutime, cstime 16, 17 (1-based, from the man page).
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / CLOCK_TICK


def rss_mb(pid: int) -> float:
    fields = _stat(pid)
    return int(fields[21]) * PAGE / 2**20 if fields else 0.0


def pids_named(name: str) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == name:
                    out.append(int(entry.name))
            except OSError:
                continue
    return out


def postgres_cpu() -> float:
    """Every PostgreSQL server process, plus what the postmaster's reaped children used."""
    total = 0.0
    for pid in pids_named("postgres"):
        fields = _stat(pid)
        if fields is None:
            continue
        postmaster = int(fields[1]) == 1  # ppid
        total += cpu_seconds(pid, children=postmaster)
    return total


def postgres_rss() -> float:
    return sum(rss_mb(pid) for pid in pids_named("postgres"))


@dataclass
class Snapshot:
    at: float
    cpu: dict[str, float]
    rss: dict[str, float]
    statements: dict[str, float]
    commits: int
    outbox: dict[str, int]
    inbox: dict[str, int]


async def _metric(client: httpx.AsyncClient, url: str, name: str) -> float:
    try:
        text = (await client.get(url + "/metrics", timeout=10)).text
    except httpx.HTTPError:
        return float("nan")
    match = re.search(rf"^{name}(?:{{[^}}]*}})? ([0-9.e+]+)$", text, re.M)
    return float(match.group(1)) if match else float("nan")


async def snapshot(suite: Any, database_url: str, client: httpx.AsyncClient) -> Snapshot:
    procs = suite.processes.procs
    cpu = {name: cpu_seconds(proc.pid) for name, proc in procs.items()}
    cpu["beam"] = sum(cpu_seconds(pid) for pid in pids_named("beam.smp"))
    cpu["postgres"] = postgres_cpu()
    rss = {name: rss_mb(proc.pid) for name, proc in procs.items()}
    rss["beam"] = sum(rss_mb(pid) for pid in pids_named("beam.smp"))
    rss["postgres"] = postgres_rss()
    statements = {name: await _metric(client, suite.url(name), "hotline_db_statements_total")
                  for name in procs}
    statements |= {f"commits:{name}": await _metric(client, suite.url(name),
                                                    "hotline_db_commits_total")
                   for name in procs}
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("SELECT pg_stat_clear_snapshot()")
        commits = int(await conn.fetchval(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"))
        outbox, inbox = {}, {}
        for service, schema in SCHEMAS.items():
            outbox[service] = int(await conn.fetchval(f'SELECT count(*) FROM "{schema}".outbox'))
            inbox[service] = int(await conn.fetchval(f'SELECT count(*) FROM "{schema}".inbox'))
    finally:
        await conn.close()
    return Snapshot(time.monotonic(), cpu, rss, statements, commits, outbox, inbox)


# -- hops ------------------------------------------------------------------------------------------

def percentiles(values: Sequence[float]) -> dict[str, float | None]:
    if not values:
        return {"n": 0, "p50": None, "p99": None, "max": None}
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {"n": len(ordered), "p50": at(0.50), "p99": at(0.99), "max": ordered[-1]}


async def hops(database_url: str, replay_id: str, speed: float) -> dict[str, dict[str, Any]]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT type, envelope->>'time' AS at, envelope->>'correlationid' AS call_id,"
            " envelope->'data'->>'state' AS state FROM ("
            " SELECT type, envelope FROM acd.outbox WHERE type IN ('acd.call.queued',"
            "  'acd.agent.reserved', 'acd.agent.state_changed')"
            " UNION ALL SELECT type, envelope FROM cti.outbox WHERE type IN"
            "  ('cti.call.connected', 'cti.call.released')"
            " UNION ALL SELECT type, envelope FROM ivr.outbox WHERE type = 'ivr.session.completed'"
            ") AS e WHERE envelope->>'correlationid' LIKE $1", f"{replay_id}-%")
    finally:
        await conn.close()
    first: dict[tuple[str, str], float] = {}
    after_release: dict[str, float] = {}
    ordered = sorted(rows, key=lambda r: r["at"])
    for row in ordered:
        at = datetime.fromisoformat(row["at"]).timestamp()
        key = (row["call_id"], row["type"])
        if row["type"] == "acd.agent.state_changed":
            released = first.get((row["call_id"], "cti.call.released"))
            if released is not None and row["call_id"] not in after_release and at >= released:
                after_release[row["call_id"]] = at
            continue
        first.setdefault(key, at)
    scale = 1000.0 / speed  # suite seconds -> wall ms

    def span(start: str, end: str) -> list[float]:
        out = []
        for (call_id, kind), at in first.items():
            if kind == start and (call_id, end) in first:
                out.append(max(0.0, first[(call_id, end)] - at) * scale)
        return out

    release = [max(0.0, at - first[(call_id, "cti.call.released")]) * scale
               for call_id, at in after_release.items()]
    return {"routing": percentiles(span("acd.call.queued", "acd.agent.reserved")),
            "to_router": percentiles(span("ivr.session.completed", "acd.call.queued")),
            "answer": percentiles(span("acd.agent.reserved", "cti.call.connected")),
            "release": percentiles(release)}


# -- one step ------------------------------------------------------------------------------------

@dataclass
class Step:
    rate: float
    calls: int
    planned_seconds: float
    wall_seconds: float = 0.0
    report: dict[str, Any] = field(default_factory=dict)
    state: str = ""
    lag_warnings: int = 0
    hops: dict[str, dict[str, Any]] = field(default_factory=dict)
    cpu_ms: dict[str, float] = field(default_factory=dict)
    marginal_ms: dict[str, float] = field(default_factory=dict)
    rss: dict[str, float] = field(default_factory=dict)
    per_call: dict[str, float] = field(default_factory=dict)
    per_service: dict[str, float] = field(default_factory=dict)
    outcomes: dict[str, int] = field(default_factory=dict)

    @property
    def lost(self) -> int:
        r = self.report
        done = int(r.get("answered", 0)) + int(r.get("abandoned", 0)) + int(r.get("self_served", 0))
        return self.calls - done

    @property
    def sustained(self) -> bool:
        r = self.report
        p99 = self.hops.get("routing", {}).get("p99")
        return (self.state == "finished" and bool(r.get("drained")) and self.lost == 0
                and r.get("callback_completion_rate") == 1.0 and p99 is not None and p99 <= 20.0)


async def run_replay(client: httpx.AsyncClient, suite: Any, trace: str, speed: float,
                     name: str, timeout: float) -> tuple[str, dict[str, Any], float]:
    async def start() -> httpx.Response:
        return await client.post(suite.url("softswitch") + "/v1/replays",
                                 params={"speed": speed, "name": name}, content=trace,
                                 headers={"Content-Type": "application/x-ndjson"})

    response = await start()
    if response.status_code == 409:
        # An overloaded step left calls in the suite: close them (audited) and go on.
        reset = await client.post(suite.url("softswitch") + "/v1/replays/reset", timeout=300)
        reset.raise_for_status()
        log(f"  {name}: closed what the previous step left: {reset.json()}")
        response = await start()
    response.raise_for_status()
    replay_id = response.json()["replay_id"]
    started = time.monotonic()
    last_log = started
    while True:
        await asyncio.sleep(0.5)
        view = (await client.get(suite.url("softswitch") + f"/v1/replays/{replay_id}")).json()
        if view["state"] in ("finished", "failed"):
            return replay_id, view, time.monotonic() - started
        if time.monotonic() - last_log > 15:
            last_log = time.monotonic()
            p = view.get("progress") or {}
            log(f"  {name}: {view['state']} placed={p.get('placed')} ivr={p.get('in_ivr')} "
                f"queue={p.get('in_queue')} ringing={p.get('ringing')} talking={p.get('talking')} "
                f"ended={p.get('ended')}")
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"replay {replay_id} not finished after {timeout:.0f}s")


def _delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}


async def run_step(client: httpx.AsyncClient, suite: Any, database_url: str, *, rate: float,
                   seconds: float, speed: float, talk: float, seed: int,
                   idle: dict[str, float]) -> Step:
    name = f"load{int(rate)}"
    trace, calls = load_trace(rate=rate, seconds=seconds, speed=speed, talk=talk, seed=seed,
                              name=name)
    step = Step(rate, calls, seconds)
    log(f"step {rate:g} calls/s: {calls} calls over {seconds:g} wall s")
    before = await snapshot(suite, database_url, client)
    replay_id, view, wall = await run_replay(client, suite, trace, speed, name,
                                             timeout=seconds * 20 + 900)
    await asyncio.sleep(2.0)  # let PostgreSQL's statistics catch up
    after = await snapshot(suite, database_url, client)
    step.wall_seconds = wall
    step.state = view["state"]
    step.report = view.get("report") or {}
    step.lag_warnings = sum(1 for w in view.get("warnings", []) if "behind" in str(w))
    window = after.at - before.at
    cpu = _delta(after.cpu, before.cpu)
    step.cpu_ms = {k: v * 1000 / calls for k, v in cpu.items()}
    step.marginal_ms = {k: max(0.0, v - idle.get(k, 0.0) * window) * 1000 / calls
                        for k, v in cpu.items()}
    step.rss = after.rss
    events = sum(_delta(after.outbox, before.outbox).values())  # type: ignore[arg-type]
    deliveries = sum(_delta(after.inbox, before.inbox).values())  # type: ignore[arg-type]
    sent = _delta(after.statements, before.statements)
    statements = sum(v for k, v in sent.items() if not k.startswith("commits:"))
    step.per_call = {"events": events / calls, "deliveries": deliveries / calls,
                     "commits": (after.commits - before.commits) / calls,
                     "statements": statements / calls}
    step.per_service = {k: v / calls for k, v in sent.items()}
    step.per_service |= {f"events:{k}": v / calls
                         for k, v in _delta(after.outbox, before.outbox).items()}  # type: ignore[arg-type]
    step.per_service |= {f"deliveries:{k}": v / calls
                         for k, v in _delta(after.inbox, before.inbox).items()}  # type: ignore[arg-type]
    step.hops = await hops(database_url, replay_id, speed)
    if step.lost:
        listing = (await client.get(suite.url("softswitch") +
                                    f"/v1/replays/{replay_id}/calls")).json()
        listing = listing if isinstance(listing, list) else listing.get("calls", [])
        outcomes: dict[str, int] = {}
        for call in listing:
            outcomes[str(call.get("outcome"))] = outcomes.get(str(call.get("outcome")), 0) + 1
        step.outcomes = outcomes
        log(f"  outcomes: {outcomes}")
    log(f"  done in {wall:.1f} s ({view['state']}), lost {step.lost}, "
        f"cpu {sum(v for k, v in step.marginal_ms.items() if k != 'softswitch'):.1f} ms/call "
        f"(suite, marginal), routing p99 {step.hops['routing']['p99']}")
    return step


# -- peers ---------------------------------------------------------------------------------------

async def peer_amqp(amqp_url: str, count: int, in_flight: int) -> dict[str, float]:
    import aio_pika

    beam = pids_named("beam.smp")
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        consumer_channel = await connection.channel()
        await consumer_channel.set_qos(prefetch_count=64)
        queue = await consumer_channel.declare_queue(
            f"peer-{in_flight}", durable=True, arguments={"x-queue-type": "quorum"})
        got = 0
        done = asyncio.Event()

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal got
            await message.ack()
            got += 1
            if got == count:
                done.set()

        await queue.consume(on_message)
        body = json.dumps({"specversion": "1.0", "type": "cti.call.offered",
                           "data": {"call_id": "C" * 12, "from_number": "+8613800000000"}}
                          ).encode()
        client_before = time.process_time()
        beam_before = sum(cpu_seconds(p) for p in beam)
        started = time.perf_counter()
        sent = 0
        while sent < count:
            n = min(in_flight, count - sent)
            await asyncio.gather(*(channel.default_exchange.publish(
                aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                routing_key=queue.name) for _ in range(n)))
            sent += n
        await asyncio.wait_for(done.wait(), 120)
        seconds = time.perf_counter() - started
        client = time.process_time() - client_before
        broker = sum(cpu_seconds(p) for p in beam) - beam_before
        await queue.delete(if_unused=False, if_empty=False)
    finally:
        await connection.close()
    return {"rate": count / seconds, "client_us": client * 1e6 / count,
            "broker_us": broker * 1e6 / count}


async def peer_pg(database_url: str, count: int) -> dict[str, float]:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("CREATE TABLE peer_rows (id bigserial PRIMARY KEY, body text)")
        pg_before = postgres_cpu()
        client_before = time.process_time()
        started = time.perf_counter()
        for index in range(count):
            await conn.execute("INSERT INTO peer_rows (body) VALUES ($1)", f"row {index}")
        seconds = time.perf_counter() - started
        client = time.process_time() - client_before
        server = postgres_cpu() - pg_before
        await conn.execute("DROP TABLE peer_rows")
    finally:
        await conn.close()
    return {"rate": count / seconds, "client_us": client * 1e6 / count,
            "server_us": server * 1e6 / count}


async def peers(database_url: str, amqp_url: str) -> dict[str, dict[str, float]]:
    return {"amqp_serial": await peer_amqp(amqp_url, 5_000, 1),
            "amqp_pipelined": await peer_amqp(amqp_url, 20_000, 64),
            "pg_commit": await peer_pg(database_url, 5_000)}


# -- calls held open -----------------------------------------------------------------------------

async def open_calls(client: httpx.AsyncClient, suite: Any, count: int, rate: float,
                     speed: float) -> dict[str, Any]:
    """``count`` calls that talk for hours, placed at ``rate`` calls per wall second; the
    suite's memory once they are all connected (the suite is torn down afterwards)."""
    trace, calls = load_trace(rate=rate, seconds=count / rate, speed=speed, talk=10 ** 6,
                              seed=99, name="open", agents=count + 50)
    idle_rss = {n: rss_mb(p.pid) for n, p in suite.processes.procs.items()}
    response = await client.post(suite.url("softswitch") + "/v1/replays",
                                 params={"speed": speed, "name": "open"}, content=trace,
                                 headers={"Content-Type": "application/x-ndjson"})
    response.raise_for_status()
    replay_id = response.json()["replay_id"]
    started = time.monotonic()
    talking = 0
    while time.monotonic() - started < count / rate * 10 + 600:
        await asyncio.sleep(2.0)
        view = (await client.get(suite.url("softswitch") + f"/v1/replays/{replay_id}")).json()
        progress = view.get("progress") or {}
        talking = int(progress.get("talking") or 0)
        # Every call is talking, or ended on its own (a caller who self-served or hung up).
        if talking + int(progress.get("ended") or 0) >= calls:
            break
    rss = {n: rss_mb(p.pid) for n, p in suite.processes.procs.items()}
    rss["beam"] = sum(rss_mb(pid) for pid in pids_named("beam.smp"))
    rss["postgres"] = postgres_rss()
    return {"calls": calls, "talking": talking, "seconds": time.monotonic() - started,
            "rss": rss, "idle_rss": idle_rss}


# -- the run -------------------------------------------------------------------------------------

async def measure(args: argparse.Namespace) -> dict[str, Any]:
    database_url = await create_database()
    work = Path(tempfile.mkdtemp(prefix="hotline-suite-load-"))
    work.chmod(0o755)
    try:
        with private_vhost() as vhost:
            amqp_url = f"{AMQP_BASE}/{vhost}"
            env = base_environment(database_url, work, args.speed, amqp_url=amqp_url,
                                   start=START)
            env["SOFTSWITCH_MEDIA_ENABLED"] = "true" if args.media else "false"
            env["SOFTSWITCH_DRAIN_TIMEOUT_SECONDS"] = "60"
            # Past what it sustains the suite rings agents late; they come back on their own.
            env["ACD_RING_NO_ANSWER_READY_SECONDS"] = "10"
            result: dict[str, Any] = {"speed": args.speed, "talk": args.talk,
                                      "media": args.media, "steps": []}
            with distributed_suite(env, work / "logs") as suite:
                async with httpx.AsyncClient(headers=admin_headers(), timeout=60) as client:
                    log(f"suite up; idle window {args.idle:g} s")
                    quiet = await snapshot(suite, database_url, client)
                    await asyncio.sleep(args.idle)
                    later = await snapshot(suite, database_url, client)
                    window = later.at - quiet.at
                    idle = {k: v / window for k, v in _delta(later.cpu, quiet.cpu).items()}
                    result["idle"] = {
                        "cpu_share": idle,
                        "statements_per_s": sum(_delta(later.statements,
                                                       quiet.statements).values()) / window,
                        "commits_per_s": (later.commits - quiet.commits) / window}
                    for index, rate in enumerate(args.rates):
                        step = await run_step(client, suite, database_url, rate=rate,
                                              seconds=args.step_seconds, speed=args.speed,
                                              talk=args.talk, seed=index + 1, idle=idle)
                        result["steps"].append(step.__dict__ | {"lost": step.lost,
                                                                "sustained": step.sustained})
                        if not step.sustained and args.stop_at_failure:
                            log("step not sustained: stopping the steps here")
                            break
                    if args.open_calls:
                        log(f"holding {args.open_calls} calls open")
                        result["open_calls"] = await open_calls(
                            client, suite, args.open_calls, args.open_rate, args.speed)
            log("peers")
            result["peers"] = await peers(database_url, amqp_url)
    finally:
        await drop_database(database_url)
        shutil.rmtree(work, ignore_errors=True)
    return result


# -- the report -----------------------------------------------------------------------------------

def _f(value: float | None, digits: int = 1) -> str:
    return "-" if value is None or value != value else f"{value:,.{digits}f}"


def _hop(h: dict[str, Any]) -> str:
    return f"{_f(h.get('p50'))} / {_f(h.get('p99'))} / {_f(h.get('max'))}"


def _cost_table(steps: list[dict[str, Any]], names: list[str]) -> list[str]:
    lines = ["| calls/s | " + " | ".join(SHORT[n] for n in names) +
             " | suite total | events | deliveries | commits | statements | sustained |",
             "|---:|" + "---:|" * (len(names) + 5) + "---|"]
    for s in steps:
        cells = [f"{_f(s['marginal_ms'].get(n))} ({_f(s['cpu_ms'].get(n), 0)})" for n in names]
        total = sum(v for k, v in s["marginal_ms"].items() if k != "softswitch")
        gross = sum(v for k, v in s["cpu_ms"].items() if k != "softswitch")
        pc = s["per_call"]
        lines.append(f"| {s['rate']:g} | " + " | ".join(cells) +
                     f" | **{_f(total)}** ({_f(gross, 0)}) | {_f(pc['events'])} | "
                     f"{_f(pc['deliveries'])} | {_f(pc['commits'])} | {_f(pc['statements'])} | "
                     f"{'yes' if s['sustained'] else 'no'} |")
    return lines


def report(result: dict[str, Any]) -> str:
    steps = result["steps"]
    peers_ = result.get("peers", {})
    lines = [
        "## Suite load: the cost of a call at stepped rates (distributed)",
        "",
        "`python -m bench.run_all suite_load` (`python -m bench.suite_load`). " + " ".join(
            __doc__.split("\n\n")[0].split()),
        "",
        *([f"This run: `{result['command']}`.", ""] if result.get("command") else []),
        f"Replay speed {result['speed']:g}x (`HOTLINE_TIME_SCALE` the same), mean talk "
        f"{result['talk']:g} trace s, media forking {'on' if result['media'] else 'off'}. "
        "Hops in wall ms (p50 / p99 / max); CPU-ms per call marginal (idle rate subtracted) "
        "with gross in brackets; `ss` is the softswitch, the load generator, not counted in "
        "the suite total.",
        "",
        "| calls/s | calls | wall s (planned) | lost | routing | to router | answer chain | "
        "release chain | sustained |",
        "|---:|---:|---|---:|---|---|---|---|---|",
    ]
    for s in steps:
        h = s["hops"]
        lines.append(
            f"| {s['rate']:g} | {s['calls']} | {s['wall_seconds']:.0f} ({s['planned_seconds']:g}) "
            f"| {s['lost']} | {_hop(h['routing'])} | {_hop(h['to_router'])} | "
            f"{_hop(h['answer'])} | {_hop(h['release'])} | "
            f"{'yes' if s['sustained'] else 'no'} |")
    names = [*SERVICES, "beam", "postgres"]
    lines += ["", *_cost_table(steps, names)]
    before = result.get("before")
    if before:
        lines += ["", f"Before ({before['label']}), the same steps on this machine:", "",
                  *_cost_table(before["steps"], names)]
    if steps:
        last = steps[-1]
        lines += ["", "Resident memory after the last step (MB): " + ", ".join(
            f"{SHORT[n]} {_f(last['rss'].get(n), 0)}" for n in names) + "."]
    sustained = [s for s in steps if s["sustained"]]
    lines += ["", "Highest step sustained (nothing lost, routing p99 ≤ 20 ms): " +
              (f"**{max(s['rate'] for s in sustained):g} calls/s**" if sustained else "none") + "."]
    for label, idle in (("Idle suite", result.get("idle")),
                        ("Before, idle", (before or {}).get("idle"))):
        if idle:
            share = sum(v for k, v in idle["cpu_share"].items() if k != "softswitch")
            lines.append(f"{label}: {share * 100:.1f}% of a core, "
                         f"{_f(idle['statements_per_s'])} statements/s, "
                         f"{_f(idle['commits_per_s'])} commits/s.")
    opened = result.get("open_calls")
    if opened:
        total = sum(v for k, v in opened["rss"].items() if k != "softswitch")
        lines.append(
            f"Calls held open: {opened['talking']} of {opened['calls']} talking at once after "
            f"{opened['seconds']:.0f} s; resident memory " + ", ".join(
                f"{SHORT[n]} {_f(v, 0)}" for n, v in opened["rss"].items()) +
            f" MB (suite without the load generator {total:,.0f} MB).")
    if peers_:
        a1, a64, pg = peers_["amqp_serial"], peers_["amqp_pipelined"], peers_["pg_commit"]
        lines += [
            "", "Peers in the same run: "
            f"aio-pika persistent publish + confirm + consume on a quorum queue, one at a time "
            f"{a1['rate']:,.0f} msg/s ({a1['client_us']:,.0f} µs client + "
            f"{a1['broker_us']:,.0f} µs broker CPU per message), 64 in flight "
            f"{a64['rate']:,.0f} msg/s ({a64['client_us']:,.0f} + {a64['broker_us']:,.0f} µs); "
            f"asyncpg single-row commits {pg['rate']:,.0f}/s ({pg['client_us']:,.0f} µs client "
            f"+ {pg['server_us']:,.0f} µs PostgreSQL).",
        ]
        if steps:
            best = steps[-1] if not sustained else max(sustained, key=lambda s: s["rate"])
            pc = best["per_call"]
            total = sum(v for k, v in best["marginal_ms"].items() if k != "softswitch")
            per_message = (a64["client_us"] + a64["broker_us"]) / 1000
            per_commit = (pg["client_us"] + pg["server_us"]) / 1000
            floor = pc["deliveries"] * per_message + pc["commits"] * per_commit
            lines.append(
                f"At {best['rate']:g} calls/s a call costs {total:.1f} CPU-ms; its "
                f"{pc['deliveries']:.1f} deliveries and {pc['commits']:.1f} commits alone would "
                f"cost {floor:.1f} ms at the peers' unit costs (the suite is "
                f"{total / floor:.1f}x that).")
    return "\n".join(lines) + "\n"


def parse_rates(text: str) -> list[float]:
    return [float(part) for part in text.split(",") if part.strip()]


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", type=parse_rates, default=[10, 25, 50, 100, 200, 400],
                        help="calls per wall second, comma-separated")
    parser.add_argument("--step-seconds", type=float, default=30.0,
                        help="wall seconds of arrivals per step")
    parser.add_argument("--speed", type=float, default=10.0)
    parser.add_argument("--talk", type=float, default=30.0, help="mean talk, trace seconds")
    parser.add_argument("--media", action="store_true")
    parser.add_argument("--idle", type=float, default=15.0, help="idle window, wall seconds")
    parser.add_argument("--open-calls", type=int, default=10_000)
    parser.add_argument("--open-rate", type=float, default=50.0,
                        help="calls per wall second while filling the open calls")
    parser.add_argument("--no-stop", dest="stop_at_failure", action="store_false",
                        help="run every step even after one was not sustained")
    parser.add_argument("--save", type=Path)
    parser.add_argument("--load", type=Path)
    parser.add_argument("--before", type=Path, default=BEFORE,
                        help="a saved run (--save) to show beside this one")
    args = parser.parse_args(argv)
    if args.load:
        result = json.loads(args.load.read_text())
    else:
        result = asyncio.run(measure(args))
        result["command"] = " ".join(["python -m bench.suite_load", *(argv or sys.argv[1:])])
        if args.save:
            args.save.write_text(json.dumps(result, indent=1, default=str))
    if args.before and args.before.exists():
        saved = json.loads(args.before.read_text())
        result["before"] = {"label": saved.get("label", args.before.stem),
                            "steps": saved["steps"], "idle": saved.get("idle")}
    section = report(result)
    print(section)
    return section


if __name__ == "__main__":
    main()
