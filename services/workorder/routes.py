"""REST edge: validate, call a handler, shape the answer."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Response, status

from services.workorder import handlers
from services.workorder.domain.callbacks import CallbackState
from services.workorder.domain.orders import OrderState, OrderType
from services.workorder.schemas import (
    BatchResult,
    CallbackOut,
    CustomerBatch,
    CustomerIn,
    CustomerOut,
    OrderDetail,
    OrderIn,
    OrderOut,
    OutageIn,
    OutageOut,
    ResolveIn,
    Summary,
)
from services.workorder.settings import WorkorderSettings
from shared.auth import Principal, require
from shared.errors import Invalid
from shared.service import Service, service_of

WRITE_CUSTOMERS = require("admin", "service", "agent")
READ = require("agent", "supervisor", "service", "integrator")
WRITE_OUTAGES = require("admin", "service", "supervisor")
WRITE_ORDERS = require("agent", "service")
REPORTS = require("supervisor", "service", "integrator")


def build_router(settings: WorkorderSettings) -> APIRouter:
    policy = settings.callback_policy()
    router = APIRouter(prefix="/v1")

    # -- customers ---------------------------------------------------------------------------

    # Declared before /customers/{account} so "lookup" is not taken for an account.
    @router.get("/customers/lookup", response_model=CustomerOut, tags=["customers"],
                dependencies=[Depends(READ)])
    async def lookup_customer(number: str = Query(min_length=1, max_length=32),
                              svc: Service = Depends(service_of)) -> dict[str, Any]:
        async with svc.sessions() as session:
            return await handlers.lookup_customer(session, number)

    @router.put("/customers/{account}", response_model=CustomerOut, tags=["customers"],
                dependencies=[Depends(WRITE_CUSTOMERS)])
    async def put_customer(account: str, body: CustomerIn,
                           svc: Service = Depends(service_of)) -> dict[str, Any]:
        if body.account is not None and body.account != account:
            raise Invalid("account", "the body's account differs from the path's")
        async with svc.transaction() as tx:
            await handlers.upsert_customer(tx, account, body)
            return await handlers.get_customer(tx.session, account)

    @router.post("/customers/batch", response_model=BatchResult, tags=["customers"],
                 dependencies=[Depends(WRITE_CUSTOMERS)])
    async def batch_customers(body: CustomerBatch,
                              svc: Service = Depends(service_of)) -> dict[str, Any]:
        async with svc.transaction() as tx:
            for customer in body.customers:
                await handlers.upsert_customer(tx, customer.account, customer)
        accounts = list(dict.fromkeys(c.account for c in body.customers))
        return {"upserted": len(accounts), "accounts": accounts}

    @router.get("/customers/{account}", response_model=CustomerOut, tags=["customers"],
                dependencies=[Depends(READ)])
    async def get_customer(account: str, svc: Service = Depends(service_of)) -> dict[str, Any]:
        async with svc.sessions() as session:
            return await handlers.get_customer(session, account)

    # -- outages -----------------------------------------------------------------------------

    @router.post("/outages", response_model=OutageOut, status_code=status.HTTP_201_CREATED,
                 tags=["outages"], dependencies=[Depends(WRITE_OUTAGES)])
    async def post_outage(body: OutageIn, svc: Service = Depends(service_of)) -> dict[str, Any]:
        async with svc.transaction() as tx:
            return await handlers.create_outage(tx, body)

    @router.get("/outages", response_model=list[OutageOut], tags=["outages"],
                dependencies=[Depends(READ)])
    async def get_outages(area: str | None = None, active: bool | None = None,
                          svc: Service = Depends(service_of)) -> list[dict[str, Any]]:
        async with svc.sessions() as session:
            return await handlers.list_outages(session, area=area, active=active, now=svc.now())

    # -- orders ------------------------------------------------------------------------------

    @router.post("/orders", response_model=OrderOut, status_code=status.HTTP_201_CREATED,
                 tags=["orders"], responses={200: {"description": "the existing order "
                                                   "(same idempotency_key or call_id and type)"}})
    async def post_order(body: OrderIn, response: Response,
                         principal: Principal = Depends(WRITE_ORDERS),
                         svc: Service = Depends(service_of)) -> dict[str, Any]:
        async with svc.transaction() as tx:
            order, created = await handlers.create_order(tx, body, principal.subject)
        if not created:
            response.status_code = status.HTTP_200_OK
        return order

    @router.post("/orders/{order_id}/resolve", response_model=OrderDetail, tags=["orders"])
    async def resolve(order_id: str, body: ResolveIn,
                      principal: Principal = Depends(WRITE_ORDERS),
                      svc: Service = Depends(service_of)) -> dict[str, Any]:
        async with svc.transaction() as tx:
            await handlers.resolve_order(tx, order_id, body.reply, principal.subject, policy)
        async with svc.sessions() as session:
            return await handlers.order_detail(session, order_id)

    @router.get("/orders/{order_id}", response_model=OrderDetail, tags=["orders"],
                dependencies=[Depends(READ)])
    async def get_order(order_id: str, svc: Service = Depends(service_of)) -> dict[str, Any]:
        async with svc.sessions() as session:
            return await handlers.order_detail(session, order_id)

    @router.get("/orders", response_model=list[OrderOut], tags=["orders"],
                dependencies=[Depends(READ)])
    async def list_orders(call_id: str | None = None, state: OrderState | None = None,
                          customer_account: str | None = None,
                          type: OrderType | None = None,
                          open: bool | None = None,
                          limit: int = Query(default=100, ge=1, le=1000),
                          svc: Service = Depends(service_of)) -> list[dict[str, Any]]:
        async with svc.sessions() as session:
            return await handlers.list_orders(session, call_id=call_id, state=state,
                                              customer_account=customer_account,
                                              order_type=type, open_only=open, limit=limit)

    # -- callbacks and reports ---------------------------------------------------------------

    @router.get("/callbacks", response_model=list[CallbackOut], tags=["callbacks"],
                dependencies=[Depends(READ)])
    async def list_callbacks(order_id: str | None = None, state: CallbackState | None = None,
                             limit: int = Query(default=100, ge=1, le=1000),
                             svc: Service = Depends(service_of)) -> list[dict[str, Any]]:
        async with svc.sessions() as session:
            return await handlers.list_callbacks(session, order_id=order_id, state=state,
                                                 limit=limit)

    @router.get("/reports/summary", response_model=Summary, tags=["reports"],
                dependencies=[Depends(REPORTS)])
    async def report_summary(svc: Service = Depends(service_of)) -> dict[str, Any]:
        async with svc.sessions() as session:
            return await handlers.summary(session)

    return router
