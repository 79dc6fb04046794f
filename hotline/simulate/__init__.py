"""What-if simulation of the hotline floor: the ACD's own routing core on a virtual clock.

See README.md in this folder for what it models and how to run it."""

from .engine_adapter import make_router
from .erlang import ErlangA, ErlangC, erlang_a, erlang_b, erlang_c
from .measures import Measures, compute_measures
from .model import CallRecord, Scenario, SimAgent, SimCall
from .router import Assignment, FifoRouter, Router
from .simulator import SimResult, Simulator, simulate

__all__ = [
    "Assignment",
    "CallRecord",
    "ErlangA",
    "ErlangC",
    "FifoRouter",
    "Measures",
    "Router",
    "Scenario",
    "SimAgent",
    "SimCall",
    "SimResult",
    "Simulator",
    "compute_measures",
    "erlang_a",
    "erlang_b",
    "erlang_c",
    "make_router",
    "simulate",
]
