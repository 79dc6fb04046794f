"""The HTTP server every service runs under (``shared.runner.server_options``): a bounded
number of requests and sockets at once, and no WebSocket message larger than a REST body."""

from __future__ import annotations

import asyncio
import contextlib

import httpx
from fastapi import FastAPI, WebSocket
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from shared.limits import MAX_BODY_BYTES
from shared.runner import server_options
from shared.settings import CommonSettings
from tests.conftest import uvicorn_serving


def app_holding(release: asyncio.Event) -> FastAPI:
    app = FastAPI()

    @app.get("/hold")
    async def hold() -> dict[str, bool]:
        await release.wait()
        return {"held": True}

    @app.websocket("/echo")
    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        while True:
            await websocket.send_bytes(await websocket.receive_bytes())

    return app


def served(app: FastAPI, common: CommonSettings) -> contextlib.AbstractAsyncContextManager[str]:
    return uvicorn_serving(app, lifespan="off", **server_options(common))


async def test_a_request_past_the_concurrency_bound_gets_503_at_once() -> None:
    common = CommonSettings(http_max_concurrency=16)
    release = asyncio.Event()
    async with served(app_holding(release), common) as base:
        limits = httpx.Limits(max_connections=32)
        async with httpx.AsyncClient(base_url=f"http://{base}", limits=limits,
                                     timeout=30) as client:
            # uvicorn counts the connection asking too: 15 held, and the 16th is refused.
            held = [asyncio.create_task(client.get("/hold")) for _ in range(15)]
            await asyncio.sleep(0.5)
            assert not any(task.done() for task in held)
            refused = await asyncio.wait_for(client.get("/hold"), 5)
            assert refused.status_code == 503
            release.set()
            assert [r.status_code for r in await asyncio.gather(*held)] == [200] * 15


async def test_a_websocket_message_over_the_body_limit_closes_the_socket_unread() -> None:
    async with served(app_holding(asyncio.Event()), CommonSettings()) as base:
        async with connect(f"ws://{base}/echo", max_size=None) as ws:
            frame = b"\x00" * (64 * 1024)  # the largest media frame the softswitch sends
            await ws.send(frame)
            assert await ws.recv() == frame
            await ws.send(b"\x00" * (MAX_BODY_BYTES + 1))
            try:
                await asyncio.wait_for(ws.recv(), 10)
            except ConnectionClosed as closed:
                assert closed.rcvd is not None and closed.rcvd.code == 1009
            else:
                raise AssertionError("an oversize message was read")
