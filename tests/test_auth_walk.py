"""Every route of every service refuses a missing token, a bad signature and a wrong scope.

Routes are discovered from the apps themselves, so a new route without ``require(...)``
fails here. Allowed paths without a token: /health, /ready, /metrics (and the OpenAPI docs).
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.routing import APIRoute, APIWebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from hotline.suite import create_app_of, settings_class
from shared.auth import SCOPES, RequireScopes
from shared.bus.memory import MemoryBus
from shared.docs import DOCS_PATHS
from shared.service import UNAUTHENTICATED_PATHS
from shared.settings import DEFAULT_PORTS
from tests.conftest import TEST_SECRET

PUBLIC = UNAUTHENTICATED_PATHS | DOCS_PATHS | {"/openapi.json"}


def required_scopes(route: Any) -> frozenset[str] | None:
    stack = [route.dependant]
    while stack:
        dependant = stack.pop()
        if isinstance(dependant.call, RequireScopes):
            return dependant.call.scopes
        stack.extend(dependant.dependencies)
    return None


def walk_routes(routes: list[Any]) -> list[Any]:
    """Flatten the app's routes; FastAPI >= 0.16x keeps included routers as wrappers."""
    found = []
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            found.extend(walk_routes(inner.routes))
        else:
            found.append(route)
    return found


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x", path)


@pytest.mark.parametrize("service", list(DEFAULT_PORTS))
def test_every_route_refuses_bad_credentials(service: str, common) -> None:
    settings = settings_class(service)(common=common)
    app = create_app_of(service)(settings, bus=MemoryBus())
    with TestClient(app) as client:
        auth = app.state.auth
        forged = auth.mint("x", ["admin"])[:-6] + "AAAAAA"
        checked = 0
        for route in walk_routes(app.routes):
            path = getattr(route, "path", "")
            if path in PUBLIC:
                continue
            if isinstance(route, APIWebSocketRoute):
                # Sockets check their scope in the handler (switch for every socket today).
                wrong_token = auth.mint("x", ["agent"])
                for query, code in (("", 4401), ("?access_token=" + forged, 4401),
                                    ("?access_token=" + wrong_token, 4403)):
                    with pytest.raises(WebSocketDisconnect) as refused, \
                            client.websocket_connect(concrete(path) + query) as socket:
                        socket.receive_text()
                    assert refused.value.code == code, (service, path, query)
                checked += 1
                continue
            assert isinstance(route, APIRoute), (service, path, type(route))
            scopes = required_scopes(route)
            assert scopes is not None, f"{service} {path} has no require(...)"
            wrong = next(s for s in SCOPES if s not in scopes and s != "admin")
            wrong_token = auth.mint("x", [wrong])
            for method in route.methods:
                url = concrete(path)
                cases = [({}, 401), ({"Authorization": "Bearer " + forged}, 401),
                         ({"Authorization": "Bearer " + wrong_token}, 403)]
                for headers, expected in cases:
                    response = client.request(method, url, headers=headers, json={})
                    assert response.status_code == expected, (service, method, path, headers,
                                                              response.text)
                checked += 1
        assert checked > 0
    assert TEST_SECRET  # the fixture's secret signed the tokens the apps accept
