"""Every route of every service answers each scope as ``docs/access.yaml`` says: a token of
every scope (and an agent token of a second agent, for the routes an agent uses only for
itself; a team's supervisor is walked in tests/acd_router/test_team_scopes.py) against the running apps on their real database. The table is the spec: a route the
apps have and the table lacks, or the other way round, fails here."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.routing import APIRoute, APIWebSocketRoute
from starlette.testclient import TestClient

from hotline.suite import create_app_of, settings_class
from shared.auth import SCOPES
from shared.bus.memory import MemoryBus
from shared.settings import DEFAULT_PORTS
from tests.test_auth_walk import PUBLIC, walk_routes

TABLE = yaml.safe_load((Path(__file__).parents[1] / "docs/access.yaml").read_text())
# What a route's path parameters are filled with: agent A001's own records.
PARAMETERS = {"agent_id": "A001", "year": "2026", "version": "1"}
# Streams end after one snapshot; everything else takes the path as it is.
QUERIES = {"/v1/stats/stream": "?count=1&every=1"}


def parse(entry: str) -> tuple[dict[str, str | None], bool]:
    """(the scopes a route accepts, each with the grant it needs; whether an agent acts there
    only for itself)."""
    accepted: dict[str, str | None] = {}
    for name in entry.split():
        scope, _, extra = name.partition("(")
        grant = extra.rstrip(")") or None
        # (self) and (team) narrow whom the token acts for, not whether it may call.
        accepted[scope] = None if grant in ("self", "team") else grant
    return accepted, "agent(self)" in entry.split()


def concrete(path: str) -> str:
    return re.sub(r"\{([^}]+)\}", lambda m: PARAMETERS.get(m.group(1), "x"), path) + \
        QUERIES.get(path, "")


@pytest.mark.parametrize("service", list(DEFAULT_PORTS))
def test_every_route_answers_each_scope_as_the_table_says(service: str, common: Any) -> None:
    settings = settings_class(service)(common=common)
    app = create_app_of(service)(settings, bus=MemoryBus())
    spec: dict[str, str] = TABLE[service]
    seen: set[str] = set()
    wrong: list[str] = []
    with TestClient(app, raise_server_exceptions=False) as client:
        auth = app.state.auth

        def token(scope: str, subject: str = "A001", grants: tuple[str, ...] = ()
                  ) -> dict[str, str]:
            return {"Authorization": "Bearer " + auth.mint(subject, [scope], grants=grants)}

        for route in walk_routes(app.routes):
            path = getattr(route, "path", "")
            if path in PUBLIC or isinstance(route, APIWebSocketRoute):
                if isinstance(route, APIWebSocketRoute):
                    seen.add(f"WS {path}")  # sockets: tests/test_auth_walk.py
                continue
            assert isinstance(route, APIRoute)
            for method in sorted(route.methods or ()):
                key = f"{method} {path}"
                seen.add(key)
                assert key in spec, f"{service}: {key} is not in docs/access.yaml"
                allowed, self_only = parse(spec[key])
                cases = [(scope, token(scope),
                          scope == "admin" or (scope in allowed and allowed[scope] is None))
                         for scope in SCOPES]
                for scope, grant in allowed.items():
                    if grant is not None:
                        cases.append((f"{scope} granted {grant}",
                                      token(scope, grants=(grant,)), True))
                if self_only:
                    cases.append(("another agent", token("agent", "A002"), False))
                for who, headers, accepted in cases:
                    status = client.request(method, concrete(path), headers=headers,
                                            json={}).status_code
                    refused = status in (401, 403)
                    # 502 / 503 (a peer down, a standby) are answers; a 500 never is.
                    if refused == accepted or status == 500:
                        wrong.append(f"{key} as {who}: {status}")
    assert not wrong, f"{service}: answers that differ from the table: {wrong}"
    assert seen == set(spec), f"{service}: in the table, not in the app: {set(spec) - seen}"
