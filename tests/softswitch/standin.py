"""A stand-in for the softswitch's peers in tests: CTI's switch link and answer REST, with a
toy IVR and ACD behind it, plus the ACD, workorder and recording endpoints the simulator
calls. Served by uvicorn on a free port so the softswitch talks to it over real sockets.

It follows CONTRACTS.md from the other side and records what it saw, for the test to check.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

import uvicorn
from fastapi import FastAPI, HTTPException, Request, WebSocket, WebSocketDisconnect

from shared.auth import Auth
from tests.conftest import TEST_SECRET

MENU = {"prompt_id": "main", "text": "1 repair, 2 billing, 9 complaint",
        "collect": {"max_digits": 1, "timeout_seconds": 5}}


@dataclass
class Seen:
    frames: list[dict[str, Any]] = field(default_factory=list)
    digits: dict[str, list[str]] = field(default_factory=dict)
    logins: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    states: list[tuple[str, str]] = field(default_factory=list)
    answers: list[tuple[str, str]] = field(default_factory=list)
    customers: list[dict[str, Any]] = field(default_factory=list)
    outages: list[dict[str, Any]] = field(default_factory=list)
    restored: list[str] = field(default_factory=list)
    orders: dict[str, dict[str, Any]] = field(default_factory=dict)
    resolved: list[str] = field(default_factory=list)
    media: dict[str, dict[str, Any]] = field(default_factory=dict)
    released: dict[str, str] = field(default_factory=dict)
    customer_digits: list[str] = field(default_factory=list)
    scopes: dict[str, set[str]] = field(default_factory=dict)
    reset: list[tuple[str, str]] = field(default_factory=list)


class StandIn:
    def __init__(self, auth: Auth, *, billing_timeout: float = 0.5) -> None:
        self.auth = auth
        self.recording_auth = Auth(TEST_SECRET, audience="recording")
        # The call (by id suffix) whose first INVITE the stand-in never answers.
        self.lose_first_invite_of: str | None = None
        self.lost: set[str] = set()
        self.seen = Seen()
        self.billing_timeout = billing_timeout
        self.ws: WebSocket | None = None
        self.cseq = itertools.count(1)
        self.ready: set[str] = set()
        self.skills: dict[str, set[str]] = {}
        self.waiting: list[str] = []
        self.queued: dict[str, str] = {}
        self.connected: set[str] = set()
        self.pending_digit: dict[str, asyncio.Event] = {}
        self.outbound: dict[str, dict[str, Any]] = {}
        self.tasks: set[asyncio.Task[Any]] = set()
        self.drop_first_connection = False
        self.connections = 0
        self.leftover_calls: list[str] = []
        self.leftover_queued: list[str] = []
        self.app = self._build()

    # -- helpers ---------------------------------------------------------------------

    def _scope(self, token: str | None) -> set[str]:
        if not token:
            raise HTTPException(401)
        return set(self.auth.verify(token.removeprefix("Bearer ").strip()).scopes)

    def _check(self, request: Request, scope: str) -> None:
        scopes = self._scope(request.headers.get("authorization"))
        self.seen.scopes.setdefault(request.url.path, set()).update(scopes)
        if scope not in scopes and "admin" not in scopes:
            raise HTTPException(403)

    async def send(self, frame: dict[str, Any]) -> None:
        assert self.ws is not None
        await self.ws.send_text(json.dumps(frame))

    async def request(self, method: str, call_id: str, leg: str, **fields: Any) -> None:
        await self.send({"type": "request", "method": method, "call_id": call_id,
                         "cseq": next(self.cseq), "leg": leg, **fields})

    async def respond(self, frame: dict[str, Any], status: int) -> None:
        await self.send({"type": "response", "status": status, "reason": "",
                         "call_id": frame["call_id"], "cseq": frame["cseq"],
                         "method": frame["method"], "leg": frame["leg"]})

    def spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # -- the toy IVR + ACD behind the switch link -----------------------------------------

    async def on_frame(self, frame: dict[str, Any]) -> None:
        self.seen.frames.append(frame)
        kind, method, leg = frame.get("type"), frame.get("method"), frame.get("leg")
        call_id = frame.get("call_id", "")
        if kind == "request" and leg == "caller":
            if method == "INVITE":
                if (self.lose_first_invite_of is not None and call_id not in self.lost
                        and call_id.endswith(self.lose_first_invite_of)):
                    self.lost.add(call_id)  # as if it went down with a dying CTI
                    return
                await self.respond(frame, 200)
            elif method == "ACK":
                await self.prompt_menu(call_id)
            elif method == "INFO":
                await self.respond(frame, 200)
                digits = str(frame["dtmf"])
                self.seen.digits.setdefault(call_id, []).append(digits)
                if call_id in self.pending_digit:
                    self.pending_digit.pop(call_id).set()
                await self.on_digits(call_id, digits)
            elif method in ("BYE", "CANCEL"):
                await self.respond(frame, 200)
                self.seen.released.setdefault(call_id, "caller_hangup")
                if call_id in self.waiting:
                    self.waiting.remove(call_id)
        elif kind == "request" and leg == "agent":
            if method == "BYE":
                await self.respond(frame, 200)
                self.seen.released.setdefault(call_id, "agent_hangup")
                await self.request("BYE", call_id, "caller")
        elif kind == "response" and leg == "agent" and method == "INVITE":
            if frame["status"] == 200:
                await self.request("ACK", call_id, "agent")
                self.connected.add(call_id)
        elif kind == "request" and leg == "customer":
            if method == "INFO":
                await self.respond(frame, 200)
                self.seen.customer_digits.append(str(frame["dtmf"]))
                await self.survey_done(call_id, str(frame["dtmf"]))
        elif kind == "response" and leg == "customer" and method == "INVITE":
            if frame["status"] == 200:
                await self.request("ACK", call_id, "customer")
                await self.request("INFO", call_id, "customer", play={
                    "prompt_id": "survey", "text": "1 satisfied 2 neutral 3 dissatisfied",
                    "collect": {"max_digits": 1, "timeout_seconds": 5}})
            elif frame["status"] >= 300:
                context = self.outbound.pop(call_id)
                await self.callback_failed(context)

    async def on_digits(self, call_id: str, digits: str) -> None:
        if call_id in self.queued:
            return
        if digits == "1":
            await self.enqueue(call_id, "repair")
        elif digits == "9":
            await self.enqueue(call_id, "complaint")
        elif digits in ("0", "3"):
            await self.enqueue(call_id, "billing")
        elif digits == "2":
            await self.request("INFO", call_id, "caller", play={
                "prompt_id": "billing", "text": "0 for an agent",
                "collect": {"max_digits": 1, "timeout_seconds": self.billing_timeout}})
            event = self.pending_digit[call_id] = asyncio.Event()
            self.spawn(self.self_serve_unless(call_id, event))
        else:
            await self.request("INFO", call_id, "caller",
                               play={"prompt_id": "invalid", "text": "invalid", "collect": None})
            await self.prompt_menu(call_id)

    async def prompt_menu(self, call_id: str, tries: int = 1) -> None:
        await self.request("INFO", call_id, "caller", play=MENU)
        event = self.pending_digit[call_id] = asyncio.Event()
        self.spawn(self.menu_timeout(call_id, event, tries))

    async def menu_timeout(self, call_id: str, event: asyncio.Event, tries: int) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), self.billing_timeout)
            return
        if self.pending_digit.get(call_id) is not event:
            return
        if tries < 2:
            await self.prompt_menu(call_id, tries + 1)
        else:
            self.pending_digit.pop(call_id, None)
            self.seen.released[call_id] = "ivr_release"
            await self.request("BYE", call_id, "caller")

    async def self_serve_unless(self, call_id: str, event: asyncio.Event) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), self.billing_timeout)
            return
        self.pending_digit.pop(call_id, None)
        await self.request("INFO", call_id, "caller",
                           play={"prompt_id": "balance", "text": "your balance", "collect": None})
        self.seen.released[call_id] = "ivr_release"
        await self.request("BYE", call_id, "caller")

    async def enqueue(self, call_id: str, queue: str) -> None:
        self.queued[call_id] = queue
        self.waiting.append(call_id)
        await self.request("INFO", call_id, "caller", notify={
            "event": "queued", "queue": queue, "position": len(self.waiting),
            "estimated_wait_seconds": 10})
        await self.dispatch()

    async def dispatch(self) -> None:
        """Longest-waiting call first, to any ready agent with the queue's skill."""
        for call_id in list(self.waiting):
            queue = self.queued[call_id]
            agent = next((a for a in sorted(self.ready) if queue in self.skills.get(a, ())),
                         None)
            if agent is None:
                continue
            self.ready.discard(agent)
            self.waiting.remove(call_id)
            await self.request("INVITE", call_id, "agent", agent_id=agent, to=f"agent:{agent}",
                               reservation_id=f"res-{call_id}", **{"from": "+86"},
                               media_grant=self.auth.mint_media_grant("softswitch", call_id))

    # -- callbacks (workorder's obligation placed through CTI) -----------------------------

    async def originate(self, order_id: str, attempt: int) -> None:
        call_id = f"out-{order_id}-{attempt}"
        self.outbound[call_id] = {"order_id": order_id, "attempt": attempt}
        await self.request("INVITE", call_id, "customer", to="+8613800000001",
                           headers={"X-Hotline-Request-Id": f"req-{attempt}",
                                    "X-Hotline-Order-Id": order_id,
                                    "X-Hotline-Callback-Id": f"cb-{order_id}",
                                    "X-Hotline-Attempt": str(attempt)},
                           **{"from": "95598"})

    async def callback_failed(self, context: dict[str, Any]) -> None:
        order = self.seen.orders[context["order_id"]]
        callback = order["callbacks"][0]
        callback["attempts"] = context["attempt"]
        if context["attempt"] >= 3:
            callback["state"] = "unreachable"
        else:
            await self.originate(context["order_id"], context["attempt"] + 1)

    async def survey_done(self, call_id: str, digit: str) -> None:
        context = self.outbound.pop(call_id)
        await self.request("BYE", call_id, "customer")
        callback = self.seen.orders[context["order_id"]]["callbacks"][0]
        callback.update(state="completed", attempts=context["attempt"],
                        satisfaction={"1": "satisfied", "2": "neutral",
                                      "3": "dissatisfied"}[digit])

    # -- the app -------------------------------------------------------------------------

    def _build(self) -> FastAPI:
        app = FastAPI()
        standin = self

        @app.websocket("/v1/switch")
        async def switch(websocket: WebSocket) -> None:
            scopes = standin._scope(websocket.headers.get("authorization"))
            if "switch" not in scopes:
                await websocket.close(code=4403)
                return
            await websocket.accept()
            standin.connections += 1
            if standin.drop_first_connection and standin.connections == 1:
                await websocket.close()
                return
            standin.ws = websocket
            try:
                while True:
                    frame = json.loads(await websocket.receive_text())
                    await standin.on_frame(frame)
            except WebSocketDisconnect:
                pass

        @app.websocket("/v1/media/{call_id}")
        async def media(websocket: WebSocket, call_id: str) -> None:
            # Recording's check: the grant CTI (here the stand-in) sent with the agent INVITE.
            grant = standin.recording_auth.verify(
                (websocket.headers.get("authorization") or "").removeprefix("Bearer "))
            assert "switch" in grant.scopes and grant.call_id == call_id
            await websocket.accept()
            record: dict[str, Any] = {"start": None, "bytes": 0, "frames": 0, "stop": False}
            standin.seen.media[call_id] = record
            with contextlib.suppress(WebSocketDisconnect):
                while True:
                    message = await websocket.receive()
                    if message["type"] == "websocket.disconnect":
                        break
                    if message.get("text") is not None:
                        body = json.loads(message["text"])
                        if body["type"] == "start":
                            record["start"] = body
                        elif body["type"] == "stop":
                            record["stop"] = True
                    elif message.get("bytes") is not None:
                        record["bytes"] += len(message["bytes"])
                        record["frames"] += 1

        @app.post("/v1/calls/{call_id}/answer")
        async def answer(call_id: str, request: Request) -> dict[str, str]:
            standin._check(request, "agent")
            body = await request.json()
            standin.seen.answers.append((call_id, body["agent_id"]))
            await standin.request("INFO", call_id, "agent", control="answer")
            return {"call_id": call_id, "state": "answering"}

        # What an earlier replay left in the suite (the test seeds them): live calls in CTI,
        # callers still queued in the ACD.
        @app.get("/v1/calls")
        async def live_calls(request: Request) -> list[dict[str, str]]:
            standin._check(request, "admin")
            return [{"call_id": c, "state": "queued"} for c in standin.leftover_calls]

        @app.post("/v1/calls/{call_id}/release")
        async def release(call_id: str, request: Request) -> dict[str, str]:
            standin._check(request, "supervisor")
            standin.leftover_calls.remove(call_id)
            standin.seen.reset.append(("released", call_id))
            return {"call_id": call_id, "state": "released"}

        @app.get("/v1/queues")
        async def queues(request: Request) -> list[dict[str, Any]]:
            standin._check(request, "admin")
            return [{"queue": "repair", "waiting": len(standin.leftover_queued), "reserved": 0}]

        @app.get("/v1/queues/{queue}")
        async def queue(queue: str, request: Request) -> dict[str, Any]:
            standin._check(request, "admin")
            return {"queue": queue, "entries": [{"call_id": c} for c in standin.leftover_queued]}

        @app.post("/v1/calls/{call_id}/withdraw")
        async def withdraw(call_id: str, request: Request) -> dict[str, str]:
            standin._check(request, "supervisor")
            standin.leftover_queued.remove(call_id)
            standin.seen.reset.append(("withdrawn", call_id))
            return {"call_id": call_id, "state": "abandoned"}

        @app.get("/v1/agents/{agent_id}")
        async def agent(agent_id: str, request: Request) -> dict[str, str]:
            standin._check(request, "agent")
            return {"agent_id": agent_id,
                    "state": "ready" if agent_id in standin.ready else "not_ready"}

        @app.post("/v1/agents/{agent_id}/login")
        async def login(agent_id: str, request: Request) -> dict[str, str]:
            standin._check(request, "agent")
            body = await request.json()
            standin.seen.logins.append((agent_id, body))
            standin.skills[agent_id] = set(body["skills"])
            return {"agent_id": agent_id, "state": "not_ready"}

        @app.post("/v1/agents/{agent_id}/state")
        async def state(agent_id: str, request: Request) -> dict[str, str]:
            standin._check(request, "agent")
            new = (await request.json())["state"]
            standin.seen.states.append((agent_id, new))
            if new == "ready":
                standin.ready.add(agent_id)
                await standin.dispatch()
            else:
                standin.ready.discard(agent_id)
            return {"agent_id": agent_id, "state": new}

        @app.post("/v1/customers/batch")
        async def customers(request: Request) -> dict[str, int]:
            standin._check(request, "admin")
            rows = (await request.json())["customers"]
            standin.seen.customers.extend(rows)
            return {"upserted": len(rows)}

        @app.post("/v1/outages", status_code=201)
        async def outages(request: Request) -> dict[str, Any]:
            standin._check(request, "admin")
            body = await request.json()
            standin.seen.outages.append(body)
            return {"outage_id": "O1", **body}

        @app.post("/v1/outages/{outage_id}/restore")
        async def restore(outage_id: str, request: Request) -> dict[str, Any]:
            standin._check(request, "admin")
            standin.seen.restored.append(outage_id)
            return {"outage_id": outage_id, "order_id": None}

        @app.post("/v1/orders", status_code=201)
        async def orders(request: Request) -> dict[str, Any]:
            standin._check(request, "agent")
            body = await request.json()
            order_id = f"WO-{len(standin.seen.orders) + 1}"
            order = {"order_id": order_id, "state": "accepted", "callbacks": [], **body}
            standin.seen.orders[order_id] = order
            return order

        @app.post("/v1/orders/{order_id}/resolve")
        async def resolve(order_id: str, request: Request) -> dict[str, Any]:
            standin._check(request, "agent")
            order = standin.seen.orders[order_id]
            order["reply"] = (await request.json())["reply"]
            order["state"] = "resolved"
            order["callbacks"].append({"callback_id": f"cb-{order_id}", "state": "pending",
                                       "attempts": 0, "satisfaction": None})
            standin.seen.resolved.append(order_id)
            standin.spawn(standin.originate(order_id, 1))
            return order

        @app.get("/v1/callbacks")
        async def callbacks(order_ids: str, request: Request) -> list[dict[str, Any]]:
            standin._check(request, "service")
            return [{**callback, "order_id": order_id}
                    for order_id in order_ids.split(",")
                    for callback in standin.seen.orders.get(order_id, {}).get("callbacks", [])]

        return app


@contextlib.asynccontextmanager
async def serve_app(app: Any, *, lifespan: Literal["auto", "on", "off"] = "on") -> AsyncIterator[str]:
    """Serve an ASGI app on a free local port; yield its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, lifespan=lifespan,
                                           ws_ping_interval=None))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("server did not start")
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 10)
        sock.close()


@contextlib.asynccontextmanager
async def serve(standin: StandIn) -> AsyncIterator[str]:
    """Serve the stand-in; yield its base URL."""
    try:
        async with serve_app(standin.app, lifespan="off") as base:
            yield base
    finally:
        for pending in list(standin.tasks):
            pending.cancel()
