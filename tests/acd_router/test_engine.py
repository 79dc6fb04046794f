"""The routing engine: ordering, strategies, widening, preferred agents, limits, estimates."""

from __future__ import annotations

import random
import time
from typing import Any

import pytest
from pydantic import ValidationError

from services.acd_router.domain.config import RoutingConfig, config_warnings
from services.acd_router.domain.engine import (
    CALLBACK,
    OVERFLOWED,
    RELEASED,
    AgentSpec,
    CallSpec,
    RoutingEngine,
)


def engine(queues: dict[str, Any] | None = None, **extra: Any) -> RoutingEngine:
    return RoutingEngine(RoutingConfig.model_validate({"queues": queues or {}, **extra}))


def login(eng: RoutingEngine, agent_id: str, skills: dict[str, int], now: float = 0,
          ready: bool = True) -> list[Any]:
    eng.agent_logged_in(AgentSpec(agent_id, skills), now)
    return eng.agent_ready(agent_id, now) if ready else []


def pairs(decisions: list[Any]) -> list[tuple[str, str | None]]:
    return [(d.call_id, d.agent_id) for d in decisions]


def test_call_takes_longest_idle_qualified_agent() -> None:
    eng = engine()
    login(eng, "A1", {"repair": 5}, now=10)
    login(eng, "A2", {"repair": 5}, now=5)
    login(eng, "B1", {"billing": 5}, now=0)
    decisions = eng.call_arrived(CallSpec("C1", "repair"), now=20)
    assert pairs(decisions) == [("C1", "A2")]
    d = decisions[0]
    assert d.step == 0 and d.explanation.rule == "longest_idle"
    assert {c.agent_id for c in d.explanation.candidates} == {"A2"}
    assert d.explanation.candidates[0].value == 15


def test_vip_first_then_fifo_and_agent_takes_best_call() -> None:
    eng = engine()
    login(eng, "A1", {"repair": 5}, ready=False)
    for i, (vip, now) in enumerate([(False, 0), (False, 1), (True, 2), (False, 3)]):
        assert eng.call_arrived(CallSpec(f"C{i}", "repair", vip=vip), now=now) == []
    assert [eng.position(f"C{i}", 4) for i in range(4)] == [2, 3, 1, 4]
    assert pairs(eng.agent_ready("A1", 5)) == [("C2", "A1")]
    eng.call_left("C2", 6)
    assert pairs(eng.agent_ready("A1", 7)) == [("C0", "A1")]
    assert pairs(eng.agent_ready("A1", 8)) == [("C1", "A1")]


def test_credit_lets_a_call_jump_only_so_far() -> None:
    eng = engine({"q": {"skills": {"q": 1}, "credits": {"vip": 60}}})
    login(eng, "A1", {"q": 1}, ready=False)
    eng.call_arrived(CallSpec("old", "q"), now=0)
    eng.call_arrived(CallSpec("recent", "q"), now=50)
    eng.call_arrived(CallSpec("vip", "q", vip=True), now=100)
    assert eng.waiting_calls("q") == ["old", "vip", "recent"]


def test_requeue_keeps_place() -> None:
    eng = engine()
    login(eng, "A1", {"repair": 5})
    assert pairs(eng.call_arrived(CallSpec("C1", "repair"), 0)) == [("C1", "A1")]
    eng.call_arrived(CallSpec("C2", "repair"), 1)
    eng.agent_busy("A1", 2)
    assert eng.requeue("C1", 3) == []
    assert eng.waiting_calls("repair") == ["C1", "C2"]
    login(eng, "A2", {"repair": 5}, now=4)  # returned its decision
    assert eng.waiting_calls("repair") == ["C2"]


@pytest.mark.parametrize(("strategy", "expected"), [
    ("longest_idle", "A1"), ("fewest_calls", "A2"), ("least_talk", "A3"),
    ("best_skill", "A3"), ("round_robin", "A2"),
])
def test_strategies(strategy: str, expected: str) -> None:
    # A1 and A3 handled calls today, A2 none; A1 has been idle longest.
    eng2 = engine({"q": {"skills": {"q": 1}, "strategy": strategy}})
    eng2.agent_logged_in(AgentSpec("A1", {"q": 3}), 0, calls_today=1, talk_seconds=500)
    eng2.agent_logged_in(AgentSpec("A2", {"q": 3}), 0, calls_today=0, talk_seconds=300)
    eng2.agent_logged_in(AgentSpec("A3", {"q": 9}), 0, calls_today=2, talk_seconds=100)
    eng2.agent_ready("A1", 0)
    eng2.agent_ready("A2", 1)
    eng2.agent_ready("A3", 2)
    if strategy == "round_robin":
        # A1 then A3 got the last calls (and came back, keeping their idle start): A2's turn.
        eng2.agent_busy("A2", 3)
        for cid, agent_id in (("r1", "A1"), ("r3", "A3")):
            assert [d.agent_id for d in eng2.call_arrived(CallSpec(cid, "q"), 3)] == [agent_id]
        eng2.agent_ready("A1", 4, since=0)
        eng2.agent_ready("A3", 4, since=2)
        eng2.agent_ready("A2", 4, since=1)
    decisions = eng2.call_arrived(CallSpec("C", "q"), 10)
    assert [d.agent_id for d in decisions] == [expected]
    assert decisions[0].explanation.rule == strategy


def test_widening_steps_lower_level_add_queue_and_drop_optional() -> None:
    eng = engine({
        "repair": {"skills": {"repair": 8}, "optional_skills": {"dialect": 5}, "steps": [
            {"after_seconds": 10, "drop_optional": True},
            {"after_seconds": 20, "min_levels": {"repair": 3}},
            {"after_seconds": 30, "add_queues": ["billing"]},
        ]},
        "billing": {"skills": {"billing": 1}},
    })
    login(eng, "expert", {"repair": 9}, ready=False)
    login(eng, "junior", {"repair": 4})
    login(eng, "biller", {"billing": 5})
    assert eng.call_arrived(CallSpec("C1", "repair"), 0) == []
    assert eng.tick(5) == []
    eng.agent_ready("expert", 6)
    # Needs dialect at first; the expert has none.
    assert eng.waiting_calls("repair") == ["C1"]
    decisions = eng.tick(10)
    assert pairs(decisions) == [("C1", "expert")] and decisions[0].step == 1
    eng.call_arrived(CallSpec("C2", "repair"), 11)
    assert pairs(eng.tick(25)) == []  # C2 has waited 14 s
    assert pairs(eng.tick(31)) == [("C2", "junior")]
    eng.call_arrived(CallSpec("C3", "repair"), 32)
    decisions = eng.tick(62)
    assert pairs(decisions) == [("C3", "biller")] and decisions[0].step == 3
    assert decisions[0].explanation.step_name == "after 30s"


def test_widening_keeps_place_in_line() -> None:
    eng = engine({"repair": {"skills": {"repair": 8},
                             "steps": [{"after_seconds": 10, "min_levels": {"repair": 1}}]}})
    login(eng, "junior", {"repair": 2}, ready=False)
    eng.call_arrived(CallSpec("C1", "repair"), 0)
    eng.tick(15)
    eng.call_arrived(CallSpec("C2", "repair"), 16)
    assert eng.waiting_calls("repair") == ["C1", "C2"]
    assert pairs(eng.agent_ready("junior", 17)) == [("C1", "junior")]


def test_preferred_agent_then_fallback() -> None:
    eng = engine({"repair": {"skills": {"repair": 1},
                             "preferred_agent": {"enabled": True, "timeout_seconds": 20}}})
    login(eng, "owner", {"repair": 5}, ready=False)
    login(eng, "other", {"repair": 5})
    assert eng.call_arrived(CallSpec("C1", "repair", preferred_agents=("owner",)), 0) == []
    assert eng.position("C1", 1) == 1
    decisions = eng.tick(20)
    assert pairs(decisions) == [("C1", "other")]
    assert decisions[0].explanation.note == "preferred agent timed out"
    # The owner ready in time gets it.
    eng.call_arrived(CallSpec("C2", "repair", preferred_agents=("owner",)), 30)
    decisions = eng.agent_ready("owner", 35)
    assert pairs(decisions) == [("C2", "owner")]
    assert decisions[0].explanation.rule == "preferred_agent"


def test_a_restored_call_keeps_what_was_left_of_its_preferred_agent_wait() -> None:
    config = {"repair": {"skills": {"repair": 1},
                         "preferred_agent": {"enabled": True, "timeout_seconds": 20}}}
    # Rebuilt 15 s after the call arrived: the pin ends at 20, not 35.
    eng = engine(config)
    login(eng, "owner", {"repair": 5}, now=15, ready=False)
    login(eng, "other", {"repair": 5}, now=15)
    restored = CallSpec("C1", "repair", preferred_agents=("owner",), arrived_at=0)
    assert eng.call_arrived(restored, 15) == []
    assert eng.tick(19) == []
    assert pairs(eng.tick(20)) == [("C1", "other")]
    # Rebuilt after the wait ran out: routed at once to whoever the strategy picks.
    eng = engine(config)
    login(eng, "owner", {"repair": 5}, now=25, ready=False)
    login(eng, "other", {"repair": 5}, now=25)
    assert pairs(eng.call_arrived(restored, 25)) == [("C1", "other")]


def test_preferred_agent_from_history() -> None:
    eng = engine({"repair": {"skills": {"repair": 1},
                             "preferred_agent": {"enabled": True, "within_days": 1}}})
    login(eng, "A1", {"repair": 5}, now=0)
    login(eng, "A2", {"repair": 5}, now=1)
    assert pairs(eng.call_arrived(CallSpec("C1", "repair", customer="cust"), 2)) == [("C1", "A1")]
    eng.call_left("C1", 3)
    eng.agent_ready("A1", 100)
    decisions = eng.call_arrived(CallSpec("C2", "repair", customer="cust"), 200)
    assert pairs(decisions) == [("C2", "A1")] and decisions[0].explanation.rule == "preferred_agent"
    eng.call_left("C2", 201)
    eng.agent_ready("A1", 300)
    # More than a day later: plain longest idle (A2, ready since 1).
    assert pairs(eng.call_arrived(CallSpec("C3", "repair", customer="cust"), 90_000)) == [
        ("C3", "A2")]


def test_limits_max_length_overflow_and_release() -> None:
    eng = engine({
        "repair": {"skills": {"repair": 1}, "limits": {
            "max_length": 1, "on_max_length": {"action": "overflow", "queue": "spill"}}},
        "spill": {"skills": {"repair": 1}, "limits": {
            "max_length": 1, "on_max_length": {"action": "release", "announcement": "busy"}}},
    })
    login(eng, "A1", {"repair": 1}, ready=False)
    assert eng.call_arrived(CallSpec("C1", "repair"), 0) == []
    decisions = eng.call_arrived(CallSpec("C2", "repair"), 1)
    assert [(d.kind, d.target_queue, d.reason) for d in decisions] == [
        (OVERFLOWED, "spill", "max_length")]
    assert eng.waiting_calls("spill") == ["C2"]
    decisions = eng.call_arrived(CallSpec("C3", "repair"), 2)
    assert [(d.kind, d.announcement) for d in decisions] == [(OVERFLOWED, None), (RELEASED, "busy")]
    assert not eng.has_call("C3")


def test_limits_no_agents_closed_and_max_wait() -> None:
    eng = engine({
        "night": {"skills": {"night": 1},
                  "hours": {"timezone": "UTC", "weekly": {"mon": ["08:00-20:00"]}},
                  "limits": {"on_closed": {"action": "callback"}}},
        "q": {"skills": {"q": 1}, "limits": {
            "on_no_agents": {"action": "release", "announcement": "nobody"},
            "max_wait_seconds": 60, "on_max_wait": {"action": "callback"}}},
    })
    # 1970-01-01 was a Thursday: closed.
    assert [d.kind for d in eng.call_arrived(CallSpec("N1", "night"), 0)] == [CALLBACK]
    assert [d.reason for d in eng.call_arrived(CallSpec("Q1", "q"), 0)] == ["no_agents"]
    login(eng, "A1", {"q": 1}, ready=False)
    assert eng.call_arrived(CallSpec("Q2", "q"), 10) == []
    assert eng.tick(69) == []
    decisions = eng.tick(70)
    assert [(d.call_id, d.kind, d.reason) for d in decisions] == [("Q2", CALLBACK, "max_wait")]
    assert not eng.has_call("Q2")


def test_business_hours_open() -> None:
    # 1970-01-05 was a Monday.
    eng = engine({"night": {"skills": {"night": 1},
                            "hours": {"timezone": "UTC", "weekly": {"mon": ["08:00-20:00"]}},
                            "limits": {"on_closed": {"action": "callback"}}}},
                 clock_epoch=4 * 86400)
    login(eng, "A1", {"night": 1}, ready=False)
    assert eng.call_arrived(CallSpec("N1", "night"), 9 * 3600) == []
    assert eng.waiting("night") == 1


def test_position_and_estimated_wait() -> None:
    eng = engine({"q": {"skills": {"q": 1}, "handle_seconds": 120}})
    assert eng.call_arrived(CallSpec("C0", "q"), 0) == []
    assert eng.estimated_wait("C0", 0) is None  # nobody staffed
    login(eng, "A1", {"q": 1}, ready=False)
    login(eng, "A2", {"q": 1}, ready=False)
    eng.call_arrived(CallSpec("C1", "q"), 1)
    assert eng.position("C1", 2) == 2
    assert eng.estimated_wait("C1", 2) == 120.0
    assert eng.position("nope", 2) == 0 and eng.estimated_wait("nope", 2) is None


def test_set_config_applies_live_and_keeps_place() -> None:
    eng = engine({"q": {"skills": {"q": 5}}})
    login(eng, "A1", {"q": 2})
    eng.call_arrived(CallSpec("C1", "q"), 0)
    eng.call_arrived(CallSpec("C2", "q", vip=True), 1)
    assert eng.waiting_calls("q") == ["C2", "C1"]
    eng.set_config(RoutingConfig.model_validate(
        {"queues": {"q": {"skills": {"q": 1}, "credits": {"vip": 0}}}}))
    assert eng.waiting_calls("q") == ["C1", "C2"]
    assert pairs(eng.tick(2)) == [("C1", "A1")]


def test_config_validation_and_warnings() -> None:
    with pytest.raises(ValidationError) as info:
        RoutingConfig.model_validate({"queues": {"q": {"skills": {"q": 11}}}})
    assert info.value.errors()[0]["loc"] == ("queues", "q", "skills", "q")
    with pytest.raises(ValidationError):
        RoutingConfig.model_validate({"queues": {"q": {"skills": {"q": 1}, "steps": [
            {"after_seconds": 20}, {"after_seconds": 10}]}}})
    config = RoutingConfig.model_validate({"queues": {"q": {
        "skills": {"q": 1}, "optional_skills": {"sign_language": 3}}}})
    assert config_warnings(config, [{"q": 5}]) == [
        "queue q on arrival: no agent meets it (nobody has sign_language)"]


def test_routing_cost_stays_small() -> None:
    """2,000 ready agents, 50 skills, 5,000 waiting calls: each event is cheap."""
    rng = random.Random(7)
    skills = [f"s{i}" for i in range(50)]
    eng = engine({s: {"skills": {s: rng.randint(1, 5)},
                      "steps": [{"after_seconds": 30, "min_levels": {s: 1}}]} for s in skills})
    t = 0.0
    for i in range(2000):
        eng.agent_logged_in(AgentSpec(f"A{i}", {s: rng.randint(1, 10)
                                                for s in rng.sample(skills, 3)}), t)
    for i in range(5000):
        eng.call_arrived(CallSpec(f"W{i}", rng.choice(skills), vip=rng.random() < 0.1), t)
    # Only now make the agents ready (2,000 decisions), then keep 2,000 agents ready by
    # adding fresh ones as the busy ones go.
    for i in range(2000):
        eng.agent_ready(f"A{i}", t)
    for i in range(2000, 4000):
        eng.agent_logged_in(AgentSpec(f"A{i}", {"x": 1}), t)
        eng.agent_ready(f"A{i}", t)
    costs = []
    for i in range(2000):
        t += 0.01
        start = time.perf_counter()
        if i % 2:
            eng.call_arrived(CallSpec(f"N{i}", rng.choice(skills)), t)
        else:
            agent_id = f"A{rng.randrange(2000)}"
            eng.agent_busy(agent_id, t)
            eng.agent_ready(agent_id, t)
        eng.tick(t)
        costs.append(time.perf_counter() - start)
    costs.sort()
    assert costs[int(len(costs) * 0.99)] < 0.005
