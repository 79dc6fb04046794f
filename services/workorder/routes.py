"""REST edge: validate, call a handler, shape the answer."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response, status

from services.workorder.domain import reports as rd
from services.workorder.domain.callbacks import CallbackState
from services.workorder.domain.orders import OrderState, OrderType
from services.workorder.domain.reports import Period
from services.workorder.handlers import (
    Runtime,
    admin,
    callbacks,
    customers,
    intake,
    orders,
    outages,
)
from services.workorder.handlers import reports as edge_reports
from services.workorder.schemas import (
    AcceptIn,
    BatchResult,
    CalendarIn,
    CallbackOut,
    CustomerAccessOut,
    CustomerBatch,
    CustomerIn,
    CustomerLookup,
    CustomerOut,
    DepartmentReportOut,
    DispatchIn,
    OpenCaseOut,
    OptionalReasonIn,
    OrderDetail,
    OrderIn,
    OrderOut,
    OutageIn,
    OutageOut,
    OverdueBulletinOut,
    PolicyOut,
    PriorityIn,
    ReasonIn,
    ResolveIn,
    RestoreIn,
    Summary,
    TransferIn,
)
from services.workorder.settings import WorkorderSettings
from shared.auth import Principal, require
from shared.data_scope import DataScope, data_scope
from shared.errors import Invalid
from shared.limits import FIRST_YEAR, LAST_YEAR
from shared.service import Service, service_of

# The directory is fed by the customer system (a service) or kept by a supervisor: an agent
# rewriting a record could move a caller's number to another account (M2 of the review).
WRITE_CUSTOMERS = require("admin", "service", "supervisor")
READ = require("agent", "supervisor", "service", "integrator")
Year = Annotated[int, Path(ge=FIRST_YEAR, le=LAST_YEAR)]
Account = Annotated[str, Path(min_length=1, max_length=64)]


def read_scope(principal: Principal = Depends(READ)) -> DataScope:
    """What the reader may see: an integrator's names and numbers are masked unless its
    grants include ``personal``."""
    return data_scope(principal)


READ_SCOPE = Depends(read_scope)
AUDIT = require("supervisor")
WRITE_OUTAGES = require("admin", "service", "supervisor")
WRITE_ORDERS = require("agent", "service")
REPORTS = require("supervisor", "service", "integrator")
WORK_ORDERS = require("agent", "supervisor", "service")
SUPERVISE = require("supervisor", "service")
CONFIGURE = require("admin", "supervisor")
CSV_MEDIA = "text/csv; charset=utf-8"
CSV_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/csv": {}},
          "description": "JSON, or CSV with `Accept: text/csv` or `?format=csv`"}}


def wants_csv(request: Request, fmt: str | None) -> bool:
    if fmt is not None:
        return fmt == "csv"
    accept = request.headers.get("accept", "")
    return "text/csv" in accept and "application/json" not in accept


def csv_response(body: str, filename: str) -> Response:
    return Response(body.encode("utf-8"), media_type=CSV_MEDIA,
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


def build_router(settings: WorkorderSettings, rt: Runtime) -> APIRouter:
    router = APIRouter(prefix="/v1")

    async def detail(svc: Service, order_id: str) -> dict[str, Any]:
        async with svc.reader() as reader:
            return await orders.order_detail(reader, order_id, rt, svc.now())

    # -- customers ---------------------------------------------------------------------------

    # Declared before /customers/{account} so "lookup" is not taken for an account.
    @router.get("/customers/lookup", response_model=CustomerLookup, tags=["customers"])
    async def lookup_customer(number: str = Query(min_length=1, max_length=32),
                              svc: Service = Depends(service_of),
                              principal: Principal = Depends(READ)) -> dict[str, Any]:
        """The customer a number belongs to, with the outages now active in their area (the
        IVR tells a caller from such an area, and routes their repair call). Audited (see
        `/customers/{account}/access`)."""
        scope = data_scope(principal)
        found = await customers.lookup_with_outages(svc, number, svc.now(), rt.rules)
        await customers.audit_read(svc, principal, found["account"], "lookup")
        return scope.shown(found)

    @router.put("/customers/{account}", response_model=CustomerOut, tags=["customers"],
                dependencies=[Depends(WRITE_CUSTOMERS)])
    async def put_customer(account: str, body: CustomerIn,
                           svc: Service = Depends(service_of)) -> dict[str, Any]:
        if body.account is not None and body.account != account:
            raise Invalid("account", "the body's account differs from the path's")
        numbers = customers.stored_numbers(body, rt.rules)
        async with svc.transaction() as tx:
            await customers.upsert_customer(tx, account, body, numbers)
            return await customers.get_customer(tx.session, account)

    @router.post("/customers/batch", response_model=BatchResult, tags=["customers"],
                 dependencies=[Depends(WRITE_CUSTOMERS)])
    async def batch_customers(body: CustomerBatch,
                              svc: Service = Depends(service_of)) -> dict[str, Any]:
        # Every record checked before any is written: a bad number refuses the whole batch.
        numbers = [customers.stored_numbers(c, rt.rules, f"customers.{i}.")
                   for i, c in enumerate(body.customers)]
        async with svc.transaction() as tx:
            for customer, its_numbers in zip(body.customers, numbers, strict=True):
                await customers.upsert_customer(tx, customer.account, customer, its_numbers)
        accounts = list(dict.fromkeys(c.account for c in body.customers))
        return {"upserted": len(accounts), "accounts": accounts}

    @router.get("/customers/{account}", response_model=CustomerOut, tags=["customers"])
    async def get_customer(account: Account, svc: Service = Depends(service_of),
                           principal: Principal = Depends(READ)) -> dict[str, Any]:
        """The record; every unmasked read by a person or an integrator is audited."""
        scope = data_scope(principal)
        async with svc.sessions() as session:
            found = await customers.get_customer(session, account)
        await customers.audit_read(svc, principal, account, "record")
        return scope.shown(found)

    @router.get("/customers/{account}/access", response_model=list[CustomerAccessOut],
                tags=["customers"], dependencies=[Depends(AUDIT)])
    async def customer_access(account: Account, limit: int = Query(100, ge=1, le=1000),
                              svc: Service = Depends(service_of)) -> list[dict[str, Any]]:
        """Who was shown this customer's personal data, newest first: every unmasked read
        of the record or lookup of their number by a person or an integrator."""
        return await customers.access_of(svc, account, limit)

    # -- outages -----------------------------------------------------------------------------

    @router.post("/outages", response_model=OutageOut, status_code=status.HTTP_201_CREATED,
                 tags=["outages"], dependencies=[Depends(WRITE_OUTAGES)])
    async def post_outage(body: OutageIn, svc: Service = Depends(service_of)) -> dict[str, Any]:
        async with svc.transaction() as tx:
            return await outages.create_outage(tx, body)

    @router.post("/outages/{outage_id}/restore", response_model=OutageOut, tags=["outages"])
    async def restore_outage(outage_id: str, body: RestoreIn,
                             principal: Principal = Depends(WRITE_OUTAGES),
                             svc: Service = Depends(service_of)) -> dict[str, Any]:
        """End the outage and resolve its repair order: every caller who reported it is
        called back."""
        async with svc.transaction() as tx:
            return await outages.restore_outage(tx, outage_id, body.reply, principal.subject,
                                                 rt)

    @router.get("/outages", response_model=list[OutageOut], tags=["outages"],
                dependencies=[Depends(READ)])
    async def get_outages(area: str | None = None, active: bool | None = None,
                          svc: Service = Depends(service_of)) -> list[dict[str, Any]]:
        async with svc.sessions() as session:
            return await outages.list_outages(session, area=area, active=active, now=svc.now())

    # -- orders ------------------------------------------------------------------------------

    @router.post("/orders", response_model=OrderOut, status_code=status.HTTP_201_CREATED,
                 tags=["orders"], responses={200: {"description": "the existing order "
                                                   "(same idempotency_key or call_id and type)"}})
    async def post_order(body: OrderIn, response: Response,
                         principal: Principal = Depends(WRITE_ORDERS),
                         svc: Service = Depends(service_of)) -> dict[str, Any]:
        async with svc.transaction() as tx:
            order, created = await intake.create_order(tx, body, principal.subject, rt,
                                                       taken_by=principal)
        if not created:
            response.status_code = status.HTTP_200_OK
        return order

    @router.post("/orders/{order_id}/resolve", response_model=OrderDetail, tags=["orders"])
    async def resolve(order_id: str, body: ResolveIn,
                      principal: Principal = Depends(WRITE_ORDERS),
                      svc: Service = Depends(service_of)) -> dict[str, Any]:
        async with svc.transaction() as tx:
            await orders.resolve_order(tx, order_id, body.reply, principal.subject, rt)
        return await detail(svc, order_id)

    @router.post("/orders/{order_id}/dispatch", response_model=OrderDetail, tags=["orders"])
    async def dispatch(order_id: str, body: DispatchIn,
                       principal: Principal = Depends(WORK_ORDERS),
                       svc: Service = Depends(service_of)) -> dict[str, Any]:
        async with svc.transaction() as tx:
            await orders.dispatch_order(tx, order_id, body, principal.subject, rt)
        return await detail(svc, order_id)

    @router.post("/orders/{order_id}/accept", response_model=OrderDetail, tags=["orders"])
    async def accept(order_id: str, body: AcceptIn,
                     principal: Principal = Depends(WORK_ORDERS),
                     svc: Service = Depends(service_of)) -> dict[str, Any]:
        async with svc.transaction() as tx:
            await orders.accept_order(tx, order_id, body.owner or principal.subject,
                                        principal.subject, rt)
        return await detail(svc, order_id)

    @router.post("/orders/{order_id}/on-site", response_model=OrderDetail, tags=["orders"])
    async def on_site(order_id: str, principal: Principal = Depends(WORK_ORDERS),
                      svc: Service = Depends(service_of)) -> dict[str, Any]:
        async with svc.transaction() as tx:
            await orders.arrive_order(tx, order_id, principal.subject, rt)
        return await detail(svc, order_id)

    @router.post("/orders/{order_id}/transfer", response_model=OrderDetail, tags=["orders"])
    async def transfer(order_id: str, body: TransferIn,
                       principal: Principal = Depends(WORK_ORDERS),
                       svc: Service = Depends(service_of)) -> dict[str, Any]:
        async with svc.transaction() as tx:
            await orders.transfer_order(tx, order_id, body.department, body.reason,
                                          principal.subject, rt)
        return await detail(svc, order_id)

    @router.post("/orders/{order_id}/reopen", response_model=OrderDetail, tags=["orders"])
    async def reopen(order_id: str, body: ReasonIn, principal: Principal = Depends(SUPERVISE),
                     svc: Service = Depends(service_of)) -> dict[str, Any]:
        async with svc.transaction() as tx:
            await orders.reopen_order(tx, order_id, body.reason, principal.subject, rt)
        return await detail(svc, order_id)

    @router.post("/orders/{order_id}/pause", response_model=OrderDetail, tags=["orders"])
    async def pause(order_id: str, body: ReasonIn, principal: Principal = Depends(WORK_ORDERS),
                    svc: Service = Depends(service_of)) -> dict[str, Any]:
        async with svc.transaction() as tx:
            await orders.pause_order(tx, order_id, body.reason, principal.subject, rt)
        return await detail(svc, order_id)

    @router.post("/orders/{order_id}/resume", response_model=OrderDetail, tags=["orders"])
    async def resume(order_id: str, body: OptionalReasonIn,
                     principal: Principal = Depends(WORK_ORDERS),
                     svc: Service = Depends(service_of)) -> dict[str, Any]:
        async with svc.transaction() as tx:
            await orders.resume_order(tx, order_id, body.reason, principal.subject, rt)
        return await detail(svc, order_id)

    @router.post("/orders/{order_id}/priority", response_model=OrderDetail, tags=["orders"])
    async def priority(order_id: str, body: PriorityIn,
                       principal: Principal = Depends(SUPERVISE),
                       svc: Service = Depends(service_of)) -> dict[str, Any]:
        async with svc.transaction() as tx:
            await orders.change_priority(tx, order_id, body.priority, body.reason,
                                           principal.subject, rt)
        return await detail(svc, order_id)

    @router.get("/orders/{order_id}", response_model=OrderDetail, tags=["orders"])
    async def get_order(order_id: str, svc: Service = Depends(service_of),
                        principal: Principal = Depends(READ)) -> dict[str, Any]:
        """The order with its history, callbacks and reporters. Its contact number and
        address are the customer's: an unmasked read is audited on the customer's trail."""
        found = await detail(svc, order_id)
        scope = data_scope(principal)
        scope.check_order(found)
        if found["customer_account"] is not None:
            await customers.audit_read(svc, principal, found["customer_account"], "order",
                                       order_id)
        return scope.shown(found)

    @router.get("/orders", response_model=list[OrderOut], tags=["orders"])
    async def list_orders(call_id: str | None = None, state: OrderState | None = None,
                          customer_account: str | None = None,
                          type: OrderType | None = None,
                          open: bool | None = None,
                          department: str | None = None, owner: str | None = None,
                          abandoned_call_id: str | None = None,
                          limit: int = Query(default=100, ge=1, le=1000),
                          svc: Service = Depends(service_of),
                          scope: DataScope = READ_SCOPE) -> list[dict[str, Any]]:
        async with svc.sessions() as session:
            found = await orders.list_orders(session, call_id=call_id, state=state,
                                             customer_account=customer_account,
                                             order_type=type, open_only=open, limit=limit,
                                             department=department, owner=owner,
                                             abandoned_call_id=abandoned_call_id,
                                             scope=scope)
        return [scope.shown(order) for order in found]

    @router.get("/views/open", response_model=list[OpenCaseOut], tags=["views"])
    async def open_cases(customer_account: str | None = None, owner: str | None = None,
                         department: str | None = None,
                         limit: int = Query(default=200, ge=1, le=2000),
                         svc: Service = Depends(service_of),
                         scope: DataScope = READ_SCOPE) -> list[dict[str, Any]]:
        """Open cases by customer, owner or department, with the time left on each clock."""
        async with svc.sessions() as session:
            found = await admin.open_cases(session, rt, svc.now(),
                                           customer_account=customer_account, owner=owner,
                                           department=department, limit=limit,
                                           scope=scope)
        return [scope.shown(case) for case in found]

    # -- configuration: SLA policy and calendars ---------------------------------------------

    @router.get("/sla/policy", response_model=PolicyOut, tags=["sla"],
                dependencies=[Depends(READ)])
    async def get_policy(svc: Service = Depends(service_of)) -> dict[str, Any]:
        async with svc.sessions() as session:
            return (await admin.policies(session, latest=True))[0]

    @router.get("/sla/policies", response_model=list[PolicyOut], tags=["sla"],
                dependencies=[Depends(READ)])
    async def list_policies(svc: Service = Depends(service_of)) -> list[dict[str, Any]]:
        async with svc.sessions() as session:
            return await admin.policies(session, latest=False)

    @router.put("/sla/policy", response_model=PolicyOut, tags=["sla"])
    async def put_policy(body: dict[str, Any], principal: Principal = Depends(CONFIGURE),
                         svc: Service = Depends(service_of)) -> dict[str, Any]:
        """A new version (validated); open cases' clocks take its budgets and keep their time.
        The response comes once every open case has moved (in batches, each its own
        transaction; the timer workers finish any a crash leaves behind)."""
        async with svc.transaction() as tx:
            version = await admin.new_policy(tx, body, principal.subject)
        await admin.replan_open_cases(svc, rt, principal.subject, settings.replan_batch)
        async with svc.sessions() as session:
            return next(p for p in await admin.policies(session, latest=False)
                        if p["version"] == version)

    @router.get("/calendars", tags=["calendars"], dependencies=[Depends(READ)])
    async def list_calendars() -> list[dict[str, Any]]:
        return [s.document() for _, s in sorted(rt.calendar.years.items())]

    @router.get("/calendars/{year}", tags=["calendars"], dependencies=[Depends(READ)])
    async def get_calendar(year: Year) -> dict[str, Any]:
        return admin.calendar_year(rt, year)

    @router.put("/calendars/{year}", tags=["calendars"])
    async def put_calendar(year: Year, body: CalendarIn,
                           principal: Principal = Depends(CONFIGURE),
                           svc: Service = Depends(service_of)) -> dict[str, Any]:
        async with svc.transaction() as tx:
            await admin.put_calendar(tx, rt, year, body.model_dump(mode="json"),
                                     principal.subject)
        return admin.calendar_year(rt, year)

    # -- callbacks and reports ---------------------------------------------------------------

    @router.get("/callbacks", response_model=list[CallbackOut], tags=["callbacks"])
    async def list_callbacks(order_id: str | None = None,
                             order_ids: str | None = Query(
                                 default=None, max_length=20_000,
                                 description="several orders at once: comma-separated ids"),
                             state: CallbackState | None = None,
                             limit: int = Query(default=100, ge=1, le=5000),
                             svc: Service = Depends(service_of),
                             scope: DataScope = READ_SCOPE) -> list[dict[str, Any]]:
        many = None
        if order_ids is not None:
            many = [part for part in order_ids.split(",") if part]
            if len(many) > 500:
                raise Invalid("order_ids", "at most 500 orders at once")
        async with svc.reader() as reader:
            found = await callbacks.list_callbacks(reader, order_id=order_id, state=state,
                                                  limit=limit, order_ids=many)
        return [scope.shown(callback) for callback in found]

    @router.get("/reports/summary", response_model=Summary, tags=["reports"],
                dependencies=[Depends(REPORTS)])
    async def report_summary(svc: Service = Depends(service_of)) -> dict[str, Any]:
        async with svc.sessions() as session:
            return await edge_reports.summary(session)

    @router.get("/reports/departments", response_model=DepartmentReportOut, tags=["reports"],
                dependencies=[Depends(REPORTS)], responses=CSV_RESPONSE)
    async def report_departments(request: Request, period: Period = Period.DAY,
                                 date: date | None = None,
                                 format: Literal["json", "csv"] | None = None,
                                 svc: Service = Depends(service_of)) -> Any:
        """Per department: created, resolved, closed, overdue, reopened, callback completion,
        satisfaction, first-contact resolution (definitions in the README). ``date`` is any
        local day in the period (default: today, Asia/Shanghai, suite clock)."""
        now = svc.now()
        day = date or rt.calendar.local_date(now)
        async with svc.sessions() as session:
            report = await edge_reports.departments(session, rt, period, day, now)
        if wants_csv(request, format):
            return csv_response(rd.departments_csv(report),
                                f"workorder-departments-{period.value}-{report['label']}.csv")
        return report

    @router.get("/reports/overdue", response_model=OverdueBulletinOut, tags=["reports"],
                dependencies=[Depends(REPORTS)], responses=CSV_RESPONSE)
    async def report_overdue(request: Request,
                             period: Literal["day", "week"] = "day",
                             date: date | None = None,
                             format: Literal["json", "csv"] | None = None,
                             svc: Service = Depends(service_of)) -> Any:
        """The overdue bulletin (通报), daily or weekly: per department, every clock overdue in
        the period — which clock, by how much, its escalation level, the case's owner."""
        now = svc.now()
        day = date or rt.calendar.local_date(now)
        async with svc.reader() as reader:
            policy = await rt.sla_policy(reader)
        async with svc.sessions() as session:
            report = await edge_reports.overdue_bulletin(session, rt, policy, Period(period),
                                                         day, now)
        if wants_csv(request, format):
            return csv_response(rd.bulletin_csv(report),
                                f"workorder-overdue-{period}-{report['label']}.csv")
        return report

    return router
