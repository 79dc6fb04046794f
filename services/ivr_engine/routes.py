"""The IVR engine's REST: a session as it stands, and the menus it serves."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from services.ivr_engine.db import load_session
from services.ivr_engine.domain import MenuCatalog, SessionState
from shared.auth import require
from shared.errors import NotFound
from shared.service import Service, service_of

READERS = require("agent", "supervisor", "service", "integrator")


def build_router(catalog: MenuCatalog) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["ivr"])

    @router.get("/sessions/{call_id}", dependencies=[Depends(READERS)])
    async def get_session(call_id: str, svc: Service = Depends(service_of)) -> SessionState:
        async with svc.sessions() as session:
            state = await load_session(session, call_id)
        if state is None:
            raise NotFound("ivr session for call", call_id)
        return state

    @router.get("/menus", dependencies=[Depends(READERS)])
    async def list_menus() -> list[dict[str, Any]]:
        return [{**menu.model_dump(mode="json"), "default": menu is catalog.default}
                for menu in catalog]

    return router
