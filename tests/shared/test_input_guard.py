"""The input guard: what no field may hold is refused with 422 naming where it is, a body
over the limit with 413, and everything else reaches the route untouched."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi import FastAPI, Request
from starlette.testclient import TestClient

from shared.input_guard import InputGuard, InputLimits, body_problem

NUL, SURROGATE = "\\u0000", "\\ud800"


@pytest.mark.parametrize(("body", "loc", "kind"), [
    ('{"name": "a' + NUL + 'b"}', ["body", "name"], "string_character"),
    ('{"items": [{"x": "ok"}, {"x": "' + SURROGATE + '"}]}', ["body", "items", 1, "x"],
     "string_character"),
    ('{"a' + NUL + '": 1}', ["body"], "string_character"),
    ('{"seconds": NaN}', ["body", "seconds"], "finite_number"),
    ('{"n": [1, -Infinity]}', ["body", "n", 1], "finite_number"),
    ("[" * 40 + "]" * 40, ["body", *[0] * 32], "too_deep"),
    ("[" * 5000 + "]" * 5000, ["body"], "too_deep"),
])
def test_what_no_field_may_hold_is_found_where_it_is(body: str, loc: list[Any],
                                                     kind: str) -> None:
    problem = body_problem(body.encode(), max_depth=32)
    assert problem is not None, body
    assert (list(problem.loc), problem.type) == (loc, kind)


@pytest.mark.parametrize("body", [
    '{"name": "张三", "escaped": "\\u5f20\\u4e09", "emoji": "\\ud83d\\ude00"}',
    '{"text": "NaN and Infinity are words"}',
    '{"list": ' + json.dumps([{"n": i} for i in range(200)]) + "}",
    "not json at all",
    '{"k": "v"}\n{"k": "v"}\n',
])
def test_ordinary_bodies_pass(body: str) -> None:
    assert body_problem(body.encode(), max_depth=32) is None


def echo_app() -> FastAPI:
    app = FastAPI()
    app.add_middleware(InputGuard, limits=InputLimits(max_body_bytes=1024,
                                                      larger_bodies={"/big": 4096}))

    @app.post("/echo/{name}")
    @app.post("/big")
    async def echo(request: Request) -> dict[str, Any]:
        return {"body": (await request.body()).decode(), "query": dict(request.query_params)}

    return app


@pytest.mark.parametrize(("method", "url", "body", "status", "loc"), [
    ("POST", "/echo/x", '{"a": "' + NUL + '"}', 422, ["body", "a"]),
    ("POST", "/echo/x?who=a%00b", "{}", 422, ["query", "who"]),
    ("POST", "/echo/x?who=%ED%A0%80", "{}", 422, ["query"]),
    ("POST", "/echo/a%00b", "{}", 422, ["path"]),
    ("POST", "/echo/x", "x" * 1025, 413, ["body"]),
    ("POST", "/big", "x" * 4000, 200, None),
    ("POST", "/big", "x" * 4097, 413, ["body"]),
    ("POST", "/echo/x?who=%E5%BC%A0", '{"a": "\\u5f20"}', 200, None),
])
def test_the_guard_answers_before_the_route(method: str, url: str, body: str, status: int,
                                            loc: list[Any] | None) -> None:
    with TestClient(echo_app()) as client:
        response = client.request(method, url, content=body.encode(),
                                  headers={"content-type": "application/json"})
    assert response.status_code == status, response.text
    if loc is None:
        assert response.json()["body"] == body
    else:
        assert response.json()["detail"][0]["loc"] == loc
