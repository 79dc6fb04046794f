"""Pure pieces: the replay clock, the media pacing and the report's definitions."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from services.softswitch.media import SAMPLE_RATE, pcm, samples_between
from services.softswitch.peers import callback_status
from services.softswitch.replay_clock import ReplayClock
from services.softswitch.report import CallOutcome, OrderOutcome, compute_report
from services.softswitch.switch import ws_url


class Wall:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.mark.parametrize(("speed", "wall_elapsed", "trace"), [
    (1, 0, 0), (1, 2.5, 2.5), (10, 2.5, 25), (60, 60, 3600), (0.5, 4, 2)])
def test_trace_time_is_wall_elapsed_times_speed(speed, wall_elapsed, trace) -> None:
    wall = Wall()
    clock = ReplayClock(speed, wall=wall)
    wall.t += wall_elapsed
    assert clock.now() == pytest.approx(trace)


def test_delays_convert_trace_to_wall() -> None:
    wall = Wall()
    clock = ReplayClock(20, wall=wall)
    assert clock.wall_delay(100) == 5
    wall.t += 1  # trace 20
    assert clock.delay_until(30) == pytest.approx(0.5)
    assert clock.delay_until(10) == 0  # in the past
    assert clock.wall_at(40) == pytest.approx(1002)
    with pytest.raises(ValueError):
        ReplayClock(0)


async def test_sleep_until_follows_the_speed() -> None:
    clock = ReplayClock(100)
    loop = asyncio.get_running_loop()
    started = loop.time()
    ended = await clock.sleep(10)  # 10 trace seconds = 0.1 s wall
    assert 0.09 <= loop.time() - started < 0.5
    assert ended == pytest.approx(10, abs=0.5)
    assert clock.now() >= 10


def test_media_pacing_is_exact() -> None:
    assert samples_between(12.0, 16.0) == 4 * SAMPLE_RATE
    assert samples_between(5, 4) == 0
    assert len(pcm(7999, 3)) == 6  # wraps around the loop buffer
    assert pcm(0, 10) == pcm(SAMPLE_RATE, 10)


def test_ws_url() -> None:
    assert ws_url("http://cti:8001", "/v1/switch") == "ws://cti:8001/v1/switch"
    assert ws_url("https://cti/", "/v1/switch") == "wss://cti/v1/switch"


def test_report_definitions() -> None:
    calls = [
        CallOutcome("a", placed_at=0, queued_at=10, connected_at=25, ended_at=100,
                    outcome="answered", talk=75),                          # 15 s wait: in SL
        CallOutcome("b", placed_at=0, queued_at=10, connected_at=40, ended_at=100,
                    outcome="answered", talk=60),                          # 30 s: not in SL
        CallOutcome("c", placed_at=0, queued_at=10, ended_at=13, outcome="abandoned"),  # short
        CallOutcome("d", placed_at=0, queued_at=10, ended_at=70, outcome="abandoned"),
        CallOutcome("e", placed_at=0, ended_at=30, outcome="self_served"),
        CallOutcome("f", placed_at=0, queued_at=5, state="queued"),        # still open
        CallOutcome("g"),                                                  # never placed
    ]
    def task(state: str, satisfaction: str | None = None, reporter: str | None = None
             ) -> dict[str, Any]:
        return {"settled": state in ("completed", "unreachable"), "state": state,
                "satisfaction": satisfaction, "reporter_id": reporter}

    orders = [OrderOutcome("o1", True, {"settled": True, "callbacks": [
                  task("completed", "satisfied"), task("completed", "neutral", "RP1")]}),
              OrderOutcome("o2", True, {"settled": True, "callbacks": [task("unreachable")]}),
              OrderOutcome("o3", True, {"settled": False, "callbacks": [task("dialing")]}),
              OrderOutcome("o5", True, {}),  # resolved, callbacks not read yet
              OrderOutcome("o4", False, {})]
    report = compute_report(calls, orders, drained=False)
    assert report["offered"] == 6
    assert report["offered_to_queue"] == 5
    assert report["answered"] == 2 and report["abandoned"] == 2
    assert report["short_abandons"] == 1 and report["self_served"] == 1
    # answered within 20 s / (offered to queue - short abandons) = 1 / (5 - 1)
    assert report["service_level"] == 0.25
    assert report["asa_seconds"] == 22.5
    assert report["work_orders_created"] == 5 and report["orders_resolved"] == 4
    # Five tasks owed: o1's two callers, o2, o3 (dialling) and o5 (not read yet).
    assert report["callbacks_owed"] == 5 and report["callbacks_done"] == 3
    assert report["callbacks_completed"] == 2 and report["callbacks_unreachable"] == 1
    assert report["callback_completion_rate"] == pytest.approx(0.6)
    assert report["satisfaction"] == {"satisfied": 1, "neutral": 1, "dissatisfied": 0,
                                      "no_answer": 0}
    assert report["open"]["calls"] == [{"id": "f", "state": "queued"},
                                       {"id": "g", "state": "pending"}]
    assert report["open"]["orders"] == ["o3", "o5"]


def test_callback_status_reads_workorder_orders() -> None:
    assert callback_status({"callbacks": []})["settled"] is False
    done = callback_status({"callbacks": [{"state": "completed", "satisfaction": "neutral",
                                           "attempts": 2, "resolution": 1}]})
    [task] = done["callbacks"]
    assert done["settled"] and task["satisfaction"] == "neutral" and task["attempts"] == 2
    # A reopened order's next callback (or a linked reporter's) still to settle.
    open_ = callback_status({"callbacks": [{"state": "unreachable", "attempts": 3},
                                           {"state": "pending", "reporter_id": "RP1"}]})
    assert not open_["settled"] and open_["callbacks"][0]["state"] == "unreachable"
    assert open_["callbacks"][1]["reporter_id"] == "RP1"
    assert callback_status({"callbacks": [{"state": "dialing"}]})["settled"] is False
