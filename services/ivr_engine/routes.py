"""The IVR engine's REST: a session as it stands, and the menus it serves."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path

from services.ivr_engine.db import load_session
from services.ivr_engine.domain import MenuCatalog, SessionState
from shared.auth import Principal, require
from shared.data_scope import data_scope
from shared.errors import NotFound
from shared.service import Service, service_of

READERS = require("agent", "supervisor", "service", "integrator")


def build_router(catalog: MenuCatalog) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["ivr"])

    @router.get("/sessions/{call_id}")
    async def get_session(call_id: Annotated[str, Path(min_length=1, max_length=128)],
                          svc: Service = Depends(service_of),
                          principal: Principal = Depends(READERS)) -> SessionState:
        """An integrator sees the caller's numbers masked and no customer record unless its
        grants include ``personal``."""
        async with svc.sessions() as session:
            state = await load_session(session, call_id)
        if state is None:
            raise NotFound("ivr session for call", call_id)
        scope = data_scope(principal)
        if scope.personal:
            return state
        return SessionState.model_validate(
            scope.shown(state.model_dump()) | {"customer": None, "context": {}, "facts": {}})

    @router.get("/menus", dependencies=[Depends(READERS)])
    async def list_menus() -> list[dict[str, Any]]:
        return [{**menu.model_dump(mode="json"), "default": menu is catalog.default}
                for menu in catalog]

    return router
