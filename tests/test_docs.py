"""Every service's /docs and /redoc work on a machine without the internet: their pages
load Swagger UI and ReDoc from the service itself, and the OpenAPI document declares the
bearer scheme that gives Swagger UI its Authorize button."""

from __future__ import annotations

import re
from typing import Any

import pytest
from starlette.testclient import TestClient

from hotline.suite import create_app_of, settings_class
from shared.bus.memory import MemoryBus
from shared.settings import DEFAULT_PORTS


@pytest.mark.parametrize("service", list(DEFAULT_PORTS))
def test_the_api_pages_need_nothing_from_the_internet(service: str, common: Any) -> None:
    app = create_app_of(service)(settings_class(service)(common=common), bus=MemoryBus())
    with TestClient(app) as client:
        for page, asset in (("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")):
            html = client.get(page)
            assert html.status_code == 200 and html.headers["content-type"].startswith(
                "text/html")
            # Every script, style sheet and icon the page loads is the service's own.
            loaded = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html.text)
            assert loaded and all(url.startswith("/docs-assets/") for url in loaded), loaded
            assert "fonts.googleapis" not in html.text
            script = client.get(f"/docs-assets/{asset}")
            assert script.status_code == 200 and len(script.content) > 100_000
        assert client.get("/docs-assets/swagger-ui.css").status_code == 200
        schemes = client.get("/openapi.json").json()["components"]["securitySchemes"]
        assert {scheme["scheme"] for scheme in schemes.values()} == {"bearer"}
