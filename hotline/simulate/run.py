"""Load a trace or a bank CSV, simulate it with the configured router, and report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from services.softswitch.trace import parse_trace

from .bank import BANK_VIP_CREDIT, COLUMNS, bank_scenario, read_bank_csv
from .config import FileConfig
from .engine_adapter import make_router
from .simulator import SimResult, simulate
from .traces import scenario_from_trace


def detect_format(path: Path, text: str) -> str:
    first = text.lstrip().split("\n", 1)[0]
    if first.replace(" ", "").startswith(",".join(COLUMNS[:3])):
        return "bank-csv"
    return "trace"


def run_file(path: Path, config: FileConfig, *, fmt: str = "auto", seed: int = 1
             ) -> tuple[SimResult, list[dict[str, Any]], list[str]]:
    """Returns the result, the skipped lines (line number and error) and other warnings."""
    text = path.read_text(encoding="utf-8")
    if fmt == "auto":
        fmt = detect_format(path, text)
    sim = config.simulation
    epoch = None
    if fmt == "bank-csv":
        day = read_bank_csv(text)
        scenario = bank_scenario(day, seed=seed, name=path.stem)
        line_errors = [e.as_dict() for e in day.errors]
        warnings = [w for w in scenario.warnings if not w.startswith("line ")]
        # The bank's own rule unless the config says otherwise.
        vip_credit = (sim.vip_credit if "vip_credit" in sim.model_fields_set
                      else BANK_VIP_CREDIT)
    elif fmt == "trace":
        trace, errors = parse_trace(text)
        scenario = scenario_from_trace(trace, sim, name=path.stem)
        line_errors = [e.as_dict() for e in errors]
        warnings = []
        vip_credit = sim.vip_credit
        if trace.header is not None and trace.header.start is not None:
            epoch = trace.header.start.timestamp()
    else:
        raise ValueError(f"unknown format {fmt!r}")
    queues = {c.queue for c in scenario.calls if c.queue is not None}
    router = make_router(sim.router, config.routing, vip_credit=vip_credit, queues=queues,
                         clock_epoch=epoch)
    return simulate(scenario, router), line_errors, warnings
