"""The ``hotline`` command line.

    hotline replay traces/sample-busy-hour.jsonl --speed 60
    hotline token --scope agent --subject A001

Tokens are minted from the suite's signing key (``HOTLINE_JWT_SECRET``, or the development key
``make run`` keeps in ``.hotline/dev-signing-key``), so the CLI needs no login.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from shared.auth import SCOPES, SUITE_AUDIENCE, Auth, signing_secret
from shared.data_scope import GRANTS
from shared.settings import CommonSettings

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Hotline command line: replay call traces, mint development tokens.")
console = Console()
errors = Console(stderr=True)

DEFAULT_URL = "http://127.0.0.1:8006"
POLL_SECONDS = 0.5
# Exit codes of ``hotline replay`` besides 0 (finished and drained) and typer's own 2.
EXIT_FAILED, EXIT_TIMEOUT, EXIT_UNDRAINED = 1, 3, 4


def softswitch_url(given: str | None) -> str:
    """``--url``; else ``HOTLINE_SOFTSWITCH_URL``; else the running all-in-one suite's own
    record in the var dir (``make run`` writes it with the ports it uses); else the default."""
    if given:
        return given
    common = CommonSettings()
    if "softswitch_url" in common.model_fields_set:
        return common.softswitch_url
    record = common.var_dir / "suite.json"
    try:
        url = json.loads(record.read_text())["urls"]["softswitch"]
    except (OSError, ValueError, KeyError, TypeError):
        return DEFAULT_URL
    return str(url)


def _token(scopes: list[str], subject: str, ttl: int = 12 * 3600,
           grants: tuple[str, ...] = (), audience: tuple[str, ...] = (),
           team: str | None = None, department: str | None = None) -> str:
    common = CommonSettings()
    auth = Auth(signing_secret(common), max_lifetime_seconds=common.token_max_lifetime_seconds)
    return auth.mint(subject, scopes, ttl_seconds=ttl, grants=grants,
                     audience=audience or SUITE_AUDIENCE, team=team, department=department)


@app.command()
def token(
    scope: Annotated[list[str], typer.Option("--scope", "-s",
                                             help=f"One of {', '.join(SCOPES)}; repeatable.")],
    subject: Annotated[str, typer.Option(help="The token's subject (e.g. an agent id).")]
    = "developer",
    ttl: Annotated[int, typer.Option(help="Lifetime in seconds.")] = 12 * 3600,
    grant: Annotated[list[str] | None, typer.Option(
        "--grant", help=f"For an integrator: one of {', '.join(GRANTS)}; repeatable.")] = None,
    audience: Annotated[list[str] | None, typer.Option(
        "--audience", help="A service the token is for (e.g. recording); repeatable. "
                           "Default: every service of the suite.")] = None,
    team: Annotated[str | None, typer.Option(
        help="For a supervisor: the team it oversees (default: the whole floor). For an "
             "agent: its team, which the orders it takes keep.")] = None,
    department: Annotated[str | None, typer.Option(
        help="For a supervisor: the department it oversees. For an agent: its "
             "department.")] = None,
) -> None:
    """Print a development bearer token."""
    unknown = sorted(set(scope) - set(SCOPES)) + sorted(set(grant or ()) - set(GRANTS))
    if unknown:
        errors.print(f"[red]unknown scope(s) or grant(s): {', '.join(unknown)}[/red]")
        raise typer.Exit(2)
    try:
        typer.echo(_token(scope, subject, ttl, tuple(grant or ()), tuple(audience or ()),
                          team, department))
    except ValueError as refused:
        errors.print(f"[red]{refused}[/red]")
        raise typer.Exit(2) from None


def _report_table(report: dict[str, Any]) -> Table:
    table = Table(title="Replay report (trace seconds)", show_header=True)
    table.add_column("measure")
    table.add_column("value", justify="right")

    def pct(value: Any) -> str:
        return "—" if value is None else f"{value * 100:.1f}%"

    def num(value: Any) -> str:
        return "—" if value is None else f"{value:g}"

    rows = [
        ("offered", num(report.get("offered"))),
        ("offered to queue", num(report.get("offered_to_queue"))),
        ("answered", num(report.get("answered"))),
        ("abandoned", num(report.get("abandoned"))),
        ("  short abandons (< 5 s)", num(report.get("short_abandons"))),
        ("self-served", num(report.get("self_served"))),
        ("answer rate", pct(report.get("answer_rate"))),
        ("service level (20 s)", pct(report.get("service_level"))),
        ("ASA (s)", num(report.get("asa_seconds"))),
        ("average talk (s)", num(report.get("average_talk_seconds"))),
        ("work orders created", num(report.get("work_orders_created"))),
        ("callbacks done", num(report.get("callbacks_done"))),
        ("  completed / unreachable", f"{report.get('callbacks_completed', 0)} / "
                                      f"{report.get('callbacks_unreachable', 0)}"),
        ("callback completion rate", pct(report.get("callback_completion_rate"))),
    ]
    for name, value in (report.get("satisfaction") or {}).items():
        rows.append((f"satisfaction: {name}", num(value)))
    open_items = report.get("open") or {}
    if not report.get("drained", True):
        rows.append(("[yellow]still open at drain timeout[/yellow]",
                     f"{len(open_items.get('calls', []))} calls, "
                     f"{len(open_items.get('orders', []))} orders"))
    for name, value in rows:
        table.add_row(name, value)
    return table


def _print_line_errors(line_errors: list[dict[str, Any]]) -> None:
    if not line_errors:
        return
    errors.print(f"[yellow]{len(line_errors)} trace line(s) skipped:[/yellow]")
    for item in line_errors[:50]:
        errors.print(f"  line {item['line']}: {item['error']}")
    if len(line_errors) > 50:
        errors.print(f"  … and {len(line_errors) - 50} more")


@app.command()
def replay(
    trace: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True,
                                          help="A hotline-trace/1 file (JSON Lines).")],
    speed: Annotated[float | None, typer.Option(min=0.001, help="Trace seconds per wall "
                                                "second (default: the suite's time scale).")]
    = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print only the report, as JSON.")]
    = False,
    url: Annotated[str | None, typer.Option(
        help="The softswitch's base URL (default: HOTLINE_SOFTSWITCH_URL, else the running "
             f"suite's record in HOTLINE_VAR_DIR, else {DEFAULT_URL}).")] = None,
    timeout: Annotated[float | None, typer.Option(help="Give up waiting after this many "
                                                  "wall seconds (exit code 3).")] = None,
    name: Annotated[str | None, typer.Option(help="A name for the replay.")] = None,
    reset: Annotated[bool, typer.Option(
        "--reset", help="First close what earlier replays left in the suite (live calls, "
                        "callers still queued); audited.")] = False,
) -> None:
    """Replay a call trace through the suite and print its report.

    Exit codes: 0 finished with every call ended; 1 the replay failed; 2 refused (e.g. an
    earlier replay's calls are still in the suite: see --reset); 3 --timeout; 4 finished
    with calls still open at the drain timeout (the suite fell behind the trace)."""
    url = softswitch_url(url)
    headers = {"Authorization": f"Bearer {_token(['admin'], 'hotline-cli')}"}
    params: dict[str, Any] = {}
    if speed is not None:
        params["speed"] = speed
    if name:
        params["name"] = name
    with httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=30) as client:
        try:
            if reset:
                _reset(client, quiet=as_json)
            response = client.post("/v1/replays", params=params, content=trace.read_bytes(),
                                   headers={"content-type": "application/x-ndjson"})
        except httpx.HTTPError as error:
            errors.print(f"[red]cannot reach the softswitch at {url}: {error}[/red]")
            raise typer.Exit(2) from None
        if response.status_code != 202:
            errors.print(f"[red]replay refused ({response.status_code}):[/red] {response.text}")
            raise typer.Exit(2)
        started = response.json()
        replay_id = started["replay_id"]
        if not as_json:
            console.print(f"replay [bold]{replay_id}[/bold]: {started.get('calls')} calls, "
                          f"{started.get('agents')} agents at speed {started.get('speed')}")
            _print_line_errors(started.get("errors") or [])
        view = _follow(client, replay_id, timeout, quiet=as_json)
    if view is None:
        errors.print(f"[red]timed out waiting for replay {replay_id}[/red]")
        raise typer.Exit(EXIT_TIMEOUT)
    if as_json:
        typer.echo(json.dumps(view.get("report"), ensure_ascii=False, indent=2))
    else:
        for warning in (view.get("progress") or {}).get("warnings") or []:
            errors.print(f"[yellow]warning:[/yellow] {warning}")
        if view.get("report"):
            console.print(_report_table(view["report"]))
    if view["state"] != "finished":
        errors.print(f"[red]replay {replay_id} {view['state']}: {view.get('failure')}[/red]")
        raise typer.Exit(EXIT_FAILED)
    report = view.get("report") or {}
    if not report.get("drained", True):
        still = report.get("open") or {}
        lag = report.get("lag") or {}
        errors.print(
            f"[red]{len(still.get('calls', []))} call(s) and {len(still.get('orders', []))} "
            "order(s) were still open at the drain timeout: the suite fell behind the trace "
            f"(its replies took up to {lag.get('worst_p90_ms', '?')} ms at the 90th "
            "percentile). Replay at a lower --speed (the README says what this machine "
            "sustains), or start the suite with the same HOTLINE_TIME_SCALE.[/red]")
        raise typer.Exit(EXIT_UNDRAINED)


def _reset(client: httpx.Client, *, quiet: bool) -> None:
    response = client.post("/v1/replays/reset", timeout=120)
    if response.status_code != 200:
        errors.print(f"[red]reset refused ({response.status_code}):[/red] {response.text}")
        raise typer.Exit(2)
    done = response.json()
    if not quiet:
        console.print(f"reset: {done['calls_released']} live call(s) released, "
                      f"{done['entries_withdrawn']} queued call(s) withdrawn")


def _follow(client: httpx.Client, replay_id: str, timeout: float | None, *, quiet: bool
            ) -> dict[str, Any] | None:
    deadline = None if timeout is None else time.monotonic() + timeout
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[detail]}"), TimeElapsedColumn())
    with Progress(*columns, console=errors, disable=quiet, transient=False) as progress:
        bar = progress.add_task("calls", total=None, detail="")
        while True:
            try:
                response = client.get(f"/v1/replays/{replay_id}")
                response.raise_for_status()
                view: dict[str, Any] = response.json()
            except httpx.HTTPError as error:
                errors.print(f"[yellow]status unavailable: {error}[/yellow]")
                view = {}
            if view:
                p = view.get("progress") or {}
                detail = (f"{view['state']} · placed {p.get('placed', 0)} · "
                          f"ivr {p.get('in_ivr', 0)} · queue {p.get('in_queue', 0)} · "
                          f"talking {p.get('talking', 0)} · callbacks "
                          f"{p.get('orders_settled', 0)}/{p.get('orders_created', 0)}")
                lag = p.get("lag") or {}
                if lag.get("behind"):
                    detail += (f" · [yellow]suite behind: replies {lag['p90_ms']:.0f} ms "
                               f"(p90)[/yellow]")
                progress.update(bar, total=p.get("calls_total"), completed=p.get("ended", 0),
                                detail=detail)
                if view["state"] in ("finished", "failed"):
                    return view
            if deadline is not None and time.monotonic() > deadline:
                return None
            time.sleep(POLL_SECONDS)


@app.command()
def simulate(
    trace: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True,
                                          help="A hotline-trace/1 file or a bank CSV.")],
    config: Annotated[Path | None, typer.Option(exists=True, dir_okay=False, readable=True,
                                                help="YAML: a 'routing:' section (the ACD's "
                                                "configuration) and a 'simulation:' one.")]
    = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
    = False,
    fmt: Annotated[str, typer.Option("--format", help="auto, trace or bank-csv.")] = "auto",
    seed: Annotated[int, typer.Option(help="Seed for what the input leaves open (bank "
                                      "CSV: unobserved service times and patience).")] = 1,
) -> None:
    """What-if: run the ACD's routing core over a trace on a virtual clock (no services)."""
    # Imported here so the other commands do not pay for the simulator and the ACD engine.
    from pydantic import ValidationError

    from hotline.simulate.config import load_config
    from hotline.simulate.run import run_file

    if fmt not in ("auto", "trace", "bank-csv"):
        errors.print(f"[red]unknown format {fmt!r} (auto, trace or bank-csv)[/red]")
        raise typer.Exit(2)
    try:
        loaded = load_config(config)
        result, line_errors, warnings = run_file(trace, loaded, fmt=fmt, seed=seed)
    except (ValidationError, ValueError) as error:
        errors.print(f"[red]cannot simulate: {error}[/red]")
        raise typer.Exit(2) from None
    summary = result.summary(loaded.simulation.service_level_seconds)
    summary["skipped_lines"] = line_errors
    summary["warnings"] = warnings
    if as_json:
        typer.echo(json.dumps(summary, ensure_ascii=False, indent=2))
        return
    _print_line_errors(line_errors)
    for warning in warnings:
        errors.print(f"[yellow]warning:[/yellow] {warning}")
    console.print(_simulation_table(summary))


def _simulation_table(summary: dict[str, Any]) -> Table:
    table = Table(title=f"Simulation of {summary['scenario']} ({summary['router']}; "
                        f"{summary['simulated_seconds']:g} s simulated in "
                        f"{summary['wall_seconds']:g} s)")
    columns = [("all", summary["measures"]), ("regular", summary["regular"])]
    if summary.get("vip"):
        columns.append(("VIP", summary["vip"]))
    for name, measures in summary["queues"].items():
        if len(summary["queues"]) > 1:
            columns.append((f"queue {name}", measures))
    table.add_column("measure")
    for name, _ in columns:
        table.add_column(name, justify="right")

    def cell(key: str, value: Any) -> str:
        if value is None:
            return "—"
        if key in ("service_level", "p_wait", "answer_rate", "abandon_rate", "occupancy"):
            return f"{value * 100:.1f}%"
        return f"{value:.1f}" if isinstance(value, float) else str(value)

    threshold = summary["measures"]["service_level_threshold"]
    rows = [("offered", "offered"), ("offered to queue", "offered_to_queue"),
            ("answered", "answered"), ("abandoned", "abandoned"),
            ("  short abandons (< 5 s)", "short_abandons"), ("self-served", "self_served"),
            ("turned away (queue limits)", "turned_away"), ("unserved", "unserved"),
            (f"service level ({threshold:g} s)", "service_level"), ("ASA (s)", "asa"),
            ("mean wait (s)", "mean_wait"), ("longest wait (s)", "longest_wait"),
            ("P(wait)", "p_wait"), ("abandon rate", "abandon_rate"), ("AHT (s)", "aht"),
            ("occupancy", "occupancy")]
    for label, key in rows:
        table.add_row(label, *(cell(key, measures.get(key)) for _, measures in columns))
    return table


def main() -> None:
    app()


if __name__ == "__main__":
    main()
