"""Erlang C and Erlang A against published values and an independent computation."""

from __future__ import annotations

import math

import pytest

from hotline.simulate.erlang import erlang_a, erlang_a_by_chain, erlang_b, erlang_c


@pytest.mark.parametrize(("rate", "aht", "agents", "p_wait", "asa", "sl"), [
    (100 / 1800, 180, 14, 0.1741, 7.84, 0.888),     # issue 3, case (a)
    (1.0, 60, 64, 0.507, 7.60, 0.866),              # issue 3, case (c)
])
def test_erlang_c_known_values(rate: float, aht: float, agents: int, p_wait: float,
                               asa: float, sl: float) -> None:
    c = erlang_c(rate, aht, agents)
    assert c.p_wait == pytest.approx(p_wait, abs=5e-4)
    assert c.asa == pytest.approx(asa, abs=5e-3)
    assert c.service_level(20) == pytest.approx(sl, abs=5e-4)


def test_erlang_b_small_case_by_hand() -> None:
    # a = 2, n = 2: (2^2/2) / (1 + 2 + 2) = 0.4
    assert erlang_b(2.0, 2) == pytest.approx(0.4)


def test_erlang_c_refuses_unstable_load() -> None:
    with pytest.raises(ValueError):
        erlang_c(1.0, 60, 60)


@pytest.mark.parametrize(("agents", "patience"), [(11, 300), (12, 300), (5, 60), (30, 600)])
def test_erlang_a_matches_the_birth_death_chain(agents: int, patience: float) -> None:
    closed = erlang_a(200 / 3600 * (agents / 11), 180, agents, patience)
    chain = erlang_a_by_chain(200 / 3600 * (agents / 11), 180, agents, patience)
    assert closed.p_wait == pytest.approx(chain.p_wait, rel=1e-9)
    assert closed.p_abandon == pytest.approx(chain.p_abandon, rel=1e-9)
    assert closed.mean_wait == pytest.approx(chain.mean_wait, rel=1e-9)


def test_erlang_a_tends_to_erlang_c_with_endless_patience() -> None:
    a = erlang_a(100 / 1800, 180, 14, 1e9)
    c = erlang_c(100 / 1800, 180, 14)
    assert a.p_wait == pytest.approx(c.p_wait, rel=1e-4)
    assert a.mean_wait == pytest.approx(c.asa, rel=1e-4)


def test_erlang_a_is_stable_for_large_overloaded_floors() -> None:
    # 500 Erlangs on 400 agents: the series' terms overflow a float; the result must not.
    a = erlang_a(500 / 180, 180, 400, 300)
    assert math.isfinite(a.mean_wait)
    # Overloaded, abandonment takes the excess: P(abandon) -> 1 - n/load = 0.2.
    assert a.p_abandon == pytest.approx(0.2, abs=1e-3)
